"""RBAC in the simulated cluster: k8s/rbac loaded as API objects, every request authorized like the
real API server's RBAC authorizer.

- Authentication: a bearer token names an identity (`Identities`): the product's Lambda identity
  identities (groups ``customer-upgrades:jobs`` and ``customer-upgrades:reader``), the helm runner's
  service account, or any a test mints.
  A request with no token or an unknown one is served as cluster-admin (``system:admin``, group
  ``system:masters``): operators' kubectl, the real helm binary with ``--kube-token x`` and
  tests that set things up keep working. A real API server would answer 401 instead.
- Policy: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings are objects of the store
  (``rbac.authorization.k8s.io/v1``), created from k8s/rbac/*.yaml at start; the per-customer
  template (31-customer-namespace-bindings.yaml) is applied, its namespace substituted as the onboarding's
  ``sed`` does (docs/tutorials/aws.md), for each customer namespace the simulation onboards. Changing them through the API
  (as admin) changes what is allowed at once.
- Decision: allowed when a ClusterRoleBinding, or a RoleBinding in the request's namespace, names
  the user (User), one of its groups (Group) or its service account (ServiceAccount) and its role has
  a rule matching verb, API group, resource (``resource/subresource`` for subresources, ``*/sub``
  and ``*`` as RBAC allows) and, when the rule lists resourceNames, the object's name. Non-resource
  paths (discovery, /version) are open to every identity (system:discovery). Denied: the real 403
  Status, e.g. ``jobs.batch is forbidden: User "x" cannot create resource "jobs" in API group "batch"
  in the namespace "y"``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from upgrader.infra.names import JOB_NAMESPACE, JOB_SERVICE_ACCOUNT, JOBS_KUBERNETES_GROUP, READER_KUBERNETES_GROUP

from upgradectl.local.simcluster.api_errors import StoreError
from upgradectl.local.simcluster.kinds import BY_KIND, RBAC_GROUP
from upgradectl.local.simcluster.selectors import LabelSelector
from upgradectl.local.simcluster.store import ObjectStore

RBAC_DIR = Path(__file__).resolve().parents[3] / "k8s" / "rbac"
NAMESPACE_TEMPLATE = "31-customer-namespace-bindings.yaml"
ROLES = f"{RBAC_GROUP}/v1/roles"
CLUSTER_ROLES = f"{RBAC_GROUP}/v1/clusterroles"
ROLE_BINDINGS = f"{RBAC_GROUP}/v1/rolebindings"
CLUSTER_ROLE_BINDINGS = f"{RBAC_GROUP}/v1/clusterrolebindings"
NAMESPACES = "v1/namespaces"
_EVERYTHING = LabelSelector(())


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def admin(self) -> bool:
        return "system:masters" in self.groups


ADMIN = User("system:admin", ("system:masters", "system:authenticated"))
# The product's cluster workers, as EKS maps their IAM roles (k8s/README.md: aws-auth username pattern): the
# jobs identity (start, check, reconcile) and the reader identity (sync, rollout checks).
JOBS_USER = User("customer-upgrades-jobs:simulated", (JOBS_KUBERNETES_GROUP, "system:authenticated"))
READER_USER = User("customer-upgrades-reader:simulated", (READER_KUBERNETES_GROUP, "system:authenticated"))


def service_account_user(namespace: str, name: str) -> User:
    return User(f"system:serviceaccount:{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))  # fmt: skip


RUNNER_USER = service_account_user(JOB_NAMESPACE, JOB_SERVICE_ACCOUNT)


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do (the API server's authorizer.Attributes)."""

    user: User
    verb: str
    namespace: str = ""
    group: str = ""
    resource: str = ""  # plural; "" for a non-resource request
    subresource: str = ""
    name: str = ""
    path: str = ""

    @property
    def resource_request(self) -> bool:
        return bool(self.resource)


def forbidden(attrs: Attributes) -> StoreError:
    """The API server's 403 for a request RBAC did not allow (responsewriters.Forbidden)."""
    user, verb = attrs.user.name, attrs.verb
    if not attrs.resource_request:
        reason = f'User "{user}" cannot {verb} path "{attrs.path}"'
        return StoreError(403, "Forbidden", f"forbidden: {reason}", {})
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    reason = f'User "{user}" cannot {verb} resource "{resource}" in API group "{attrs.group}" {where}'
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    message = (
        f'{qualified} "{attrs.name}" is forbidden: {reason}' if attrs.name else f"{qualified} is forbidden: {reason}"
    )
    details = {k: v for k, v in {"name": attrs.name, "group": attrs.group, "kind": attrs.resource}.items() if v}
    return StoreError(403, "Forbidden", message, details)


def _rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    if not any(r == "*" or r == combined or (attrs.subresource and r == f"*/{attrs.subresource}") for r in resources):
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(attrs.name) and attrs.name in names)


def _subject_is(subject: dict[str, Any], user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


class Authorizer:
    """Decides from the Role/Binding objects in the store; `enabled=False` allows everything."""

    def __init__(self, store: ObjectStore, *, enabled: bool = True) -> None:
        self._store = store
        self.enabled = enabled

    def allowed(self, attrs: Attributes) -> bool:
        if not self.enabled or attrs.user.admin or not attrs.resource_request:
            return True
        for binding in self._store.select(CLUSTER_ROLE_BINDINGS, None, _EVERYTHING):
            if self._grants(binding, "", attrs, cluster_wide=True):
                return True
        if attrs.namespace:
            for binding in self._store.select(ROLE_BINDINGS, attrs.namespace, _EVERYTHING):
                if self._grants(binding, attrs.namespace, attrs, cluster_wide=False):
                    return True
        return False

    def check(self, attrs: Attributes) -> StoreError | None:
        """None when allowed, else the 403 the API server would answer."""
        return None if self.allowed(attrs) else forbidden(attrs)

    def _grants(self, binding: dict[str, Any], namespace: str, attrs: Attributes, *, cluster_wide: bool) -> bool:
        if not any(_subject_is(s, attrs.user, namespace) for s in binding.get("subjects") or []):
            return False
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = self._store.get(CLUSTER_ROLES, "", str(ref.get("name")))
        elif ref.get("kind") == "Role" and not cluster_wide:
            role = self._store.get(ROLES, namespace, str(ref.get("name")))
        else:
            role = None
        return role is not None and any(_rule_allows(rule, attrs) for rule in role.get("rules") or [])


# --- k8s/rbac as objects --------------------------------------------------------------------------------


class RbacManifests:
    """k8s/rbac/*.yaml: the documents applied once, and the per-customer-namespace template."""

    def __init__(self, directory: Path = RBAC_DIR, template: str = NAMESPACE_TEMPLATE) -> None:
        self.directory = directory
        self.cluster_documents: list[dict[str, Any]] = []
        self.template: list[dict[str, Any]] = []
        for path in sorted(directory.glob("*.yaml")):
            documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
            (self.template if path.name == template else self.cluster_documents).extend(documents)
        if not self.template:
            raise FileNotFoundError(f"no per-namespace RBAC template {template} in {directory}")
        placeholders = {(d.get("metadata") or {}).get("namespace") for d in self.template}
        if len(placeholders) != 1 or None in placeholders:
            raise ValueError(f"{template}: every document must name the same placeholder namespace")
        self.placeholder = str(placeholders.pop())
        self._template_json = json.dumps(self.template)

    def for_namespace(self, namespace: str) -> list[dict[str, Any]]:
        """The template with its namespace replaced, as ``sed 's/<placeholder>/<namespace>/g'`` does."""
        documents: list[dict[str, Any]] = json.loads(self._template_json.replace(self.placeholder, namespace))
        return documents


def apply_documents(store: ObjectStore, documents: list[dict[str, Any]]) -> None:
    """Create or replace each document as the object it describes (``kubectl apply``, simply)."""
    for document in documents:
        kind = BY_KIND.get((str(document.get("apiVersion")), str(document.get("kind"))))
        if kind is None:
            raise ValueError(
                f"the simulated API server does not serve {document.get('apiVersion')} {document.get('kind')}"
            )
        store.put(kind.key, document)


class Identities:
    """Bearer tokens -> users. Tokens are random per cluster; unknown ones mean cluster-admin."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}

    def mint(self, user: User) -> str:
        token = secrets.token_urlsafe(24)
        self._users[token] = user
        return token

    def authenticate(self, authorization: str | None) -> User:
        if authorization and authorization[:7].lower() == "bearer ":
            return self._users.get(authorization[7:].strip(), ADMIN)
        return ADMIN
