"""kmock's emulator, with the interception point for what kmock does not do (or does wrongly).

- Discovery: kmock's core discovery says ``groupVersion: "/v1"``, kind "Pods", no verbs and no
  ``namespaced``; client-go (helm, kubectl) then cannot map kinds to resources. The simulated API
  answers /api, /api/v1, /apis and /apis/<group>/<version> with real documents.
- Protobuf: client-go writes built-in kinds as protobuf, which kmock cannot parse (it fails inside its
  request parsing). Such writes are recorded (``ProtobufWrite``) and answered 415 with a JSON Status,
  so a real helm that gets as far as writing a release shows what it would have written.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
from kmock import KubernetesEmulator

PROTOBUF = "application/vnd.kubernetes.protobuf"
_RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# (name, singular, kind, namespaced, verbs) per group/version, as a v1.32 API server lists them
DISCOVERY: dict[str, list[tuple[str, str, str, bool, list[str]]]] = {
    "v1": [
        ("configmaps", "configmap", "ConfigMap", True, _RW),
        ("namespaces", "namespace", "Namespace", False, ["create", "delete", "get", "list", "patch", "update", "watch"]),
        ("pods", "pod", "Pod", True, _RW),
        ("pods/log", "", "Pod", True, ["get"]),
        ("secrets", "secret", "Secret", True, _RW),
        ("serviceaccounts", "serviceaccount", "ServiceAccount", True, _RW),
        ("services", "service", "Service", True, ["create", "delete", "deletecollection", "get", "list", "patch",
                                                   "update", "watch"]),
        ("services/proxy", "", "ServiceProxyOptions", True, ["create", "delete", "get", "patch", "update"]),
    ],
    "apps/v1": [
        ("deployments", "deployment", "Deployment", True, _RW),
        ("deployments/status", "", "Deployment", True, ["get", "patch", "update"]),
        ("statefulsets", "statefulset", "StatefulSet", True, _RW),
        ("statefulsets/status", "", "StatefulSet", True, ["get", "patch", "update"]),
    ],
    "batch/v1": [
        ("jobs", "job", "Job", True, _RW),
        ("jobs/status", "", "Job", True, ["get", "patch", "update"]),
    ],
}  # fmt: skip
SERVER_VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.2", "gitCommit": "67a30c0adcf52bd3f56ff0893ce19966be12991f",
    "gitTreeState": "clean", "buildDate": "2025-02-12T21:19:47Z", "goVersion": "go1.23.6", "compiler": "gc",
    "platform": "linux/amd64",
}  # fmt: skip


@dataclass(frozen=True)
class ProtobufWrite:
    """A write the API server could not accept because it came as protobuf (e.g. from helm)."""

    time: float
    method: str
    path: str
    body: bytes


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}  # fmt: skip


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def discovery_document(path: str) -> dict[str, Any] | None:
    """The discovery answer for /version, /api, /api/v1, /apis or /apis/<group>/<version>; None otherwise."""
    path = path.rstrip("/")
    if path == "/version":
        return dict(SERVER_VERSION)
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}  # fmt: skip
    if path == "/apis":
        groups = []
        for group_version in DISCOVERY:
            if "/" in group_version:
                group, version = group_version.split("/")
                entry = {"groupVersion": group_version, "version": version}
                groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    group_version = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
    if group_version not in DISCOVERY or not (path == "/api/v1" or path.startswith("/apis/")):
        return None
    resources = [
        {"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": verbs}
        for name, singular, kind, namespaced, verbs in DISCOVERY[group_version]
    ]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


@attrs.define(kw_only=True)
class ApiServer(KubernetesEmulator):
    """kmock's emulator with one interception point (`intercept`) and protobuf writes refused."""

    intercept: Callable[[Any], Awaitable[aiohttp.web.StreamResponse | None]] | None = None
    protobuf_writes: list[ProtobufWrite] = attrs.field(factory=list)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        content_type = raw_request.headers.get("Content-Type", "")
        if content_type.startswith(PROTOBUF) and raw_request.method in ("POST", "PUT", "PATCH", "DELETE"):
            body = await raw_request.read()
            self.protobuf_writes.append(ProtobufWrite(time.time(), raw_request.method, raw_request.path, body))
            message = "the simulated API server accepts JSON only; this protobuf write was recorded, not applied"
            return aiohttp.web.json_response(status_body(415, "UnsupportedMediaType", message), status=415)
        return await super().__call__(raw_request)

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        if self.intercept is not None:
            intercepted = await self.intercept(request)
            if intercepted is not None:
                return intercepted
        return await super()._handle(request)
