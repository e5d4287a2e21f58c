"""The resources the simulated API server serves, and its discovery documents (as a v1.32 server).

client-go (helm, kubectl) maps kinds to resources through discovery, so /api, /api/v1, /apis,
/apis/<group> and /apis/<group>/<version> answer real documents built from this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_READ = ("get", "list", "watch")


@dataclass(frozen=True)
class Kind:
    """One served resource: ``key`` is ``<group/>version/plural`` ("batch/v1/jobs", "v1/pods")."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = _RW
    # subresource -> (kind it answers with, verbs)
    subresources: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    short_names: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.group}/{self.version}/{self.plural}" if self.group else f"{self.version}/{self.plural}"

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The group-qualified resource in API messages: "jobs.batch", "secrets"."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def has_subresource(self, name: str) -> bool:
        return any(sub == name for sub, _, _ in self.subresources)


_STATUS = ("get", "patch", "update")
RBAC_GROUP = "rbac.authorization.k8s.io"

KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    Kind("", "v1", "events", "event", "Event", short_names=("ev",)),
    Kind("", "v1", "namespaces", "namespace", "Namespace", namespaced=False,
         verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
         subresources=(("status", "Namespace", _STATUS),), short_names=("ns",)),
    Kind("", "v1", "pods", "pod", "Pod",
         subresources=(("log", "Pod", ("get",)), ("status", "Pod", _STATUS)), short_names=("po",)),
    Kind("", "v1", "secrets", "secret", "Secret"),
    Kind("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", short_names=("sa",)),
    Kind("", "v1", "services", "service", "Service",
         verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
         subresources=(("proxy", "ServiceProxyOptions", ("create", "delete", "get", "patch", "update")),
                       ("status", "Service", _STATUS)), short_names=("svc",)),
    Kind("apps", "v1", "deployments", "deployment", "Deployment",
         subresources=(("status", "Deployment", _STATUS),), short_names=("deploy",)),
    Kind("apps", "v1", "replicasets", "replicaset", "ReplicaSet",
         subresources=(("status", "ReplicaSet", _STATUS),), short_names=("rs",)),
    Kind("apps", "v1", "statefulsets", "statefulset", "StatefulSet",
         subresources=(("status", "StatefulSet", _STATUS),), short_names=("sts",)),
    Kind("batch", "v1", "jobs", "job", "Job", subresources=(("status", "Job", _STATUS),)),
    Kind(RBAC_GROUP, "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", namespaced=False),
    Kind(RBAC_GROUP, "v1", "clusterroles", "clusterrole", "ClusterRole", namespaced=False),
    Kind(RBAC_GROUP, "v1", "rolebindings", "rolebinding", "RoleBinding"),
    Kind(RBAC_GROUP, "v1", "roles", "role", "Role"),
)  # fmt: skip
BY_KEY: dict[str, Kind] = {k.key: k for k in KINDS}
# (group, version, plural) -> Kind, for routing
BY_PATH: dict[tuple[str, str, str], Kind] = {(k.group, k.version, k.plural): k for k in KINDS}
BY_KIND: dict[tuple[str, str], Kind] = {(k.group_version, k.kind): k for k in KINDS}
GROUP_VERSIONS: tuple[str, ...] = tuple(dict.fromkeys(k.group_version for k in KINDS))

SERVER_VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.2", "gitCommit": "67a30c0adcf52bd3f56ff0893ce19966be12991f",
    "gitTreeState": "clean", "buildDate": "2025-02-12T21:19:47Z", "goVersion": "go1.23.6", "compiler": "gc",
    "platform": "linux/amd64",
}  # fmt: skip


def _group_entry(group: str) -> dict[str, Any]:
    versions = [
        {"groupVersion": gv, "version": gv.split("/")[1]} for gv in GROUP_VERSIONS if gv.startswith(group + "/")
    ]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def discovery_document(path: str) -> dict[str, Any] | None:
    """The answer for /version, /api, /api/v1, /apis, /apis/<group> or /apis/<group>/<version>; None otherwise."""
    path = path.rstrip("/")
    if path == "/version":
        return dict(SERVER_VERSION)
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}  # fmt: skip
    groups = list(dict.fromkeys(gv.split("/")[0] for gv in GROUP_VERSIONS if "/" in gv))
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_entry(g) for g in groups]}
    parts = path.split("/")
    if len(parts) == 3 and parts[1] == "apis" and parts[2] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(parts[2])}
    group_version = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
    if group_version not in GROUP_VERSIONS or not (path == "/api/v1" or path.startswith("/apis/")):
        return None
    resources: list[dict[str, Any]] = []
    for kind in KINDS:
        if kind.group_version != group_version:
            continue
        entry: dict[str, Any] = {"name": kind.plural, "singularName": kind.singular, "namespaced": kind.namespaced,
                                 "kind": kind.kind, "verbs": list(kind.verbs)}  # fmt: skip
        if kind.short_names:
            entry["shortNames"] = list(kind.short_names)
        resources.append(entry)
        for sub, sub_kind, verbs in kind.subresources:
            resources.append({"name": f"{kind.plural}/{sub}", "singularName": "", "namespaced": kind.namespaced,
                              "kind": sub_kind, "verbs": list(verbs)})  # fmt: skip
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}
