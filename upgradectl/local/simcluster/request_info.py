"""A request as the simulated API server understands it: verb, API group, resource, subresource, namespace and
name, parsed from method, path and query as apiserver's RequestInfoFactory does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from upgradectl.local.simcluster.kinds import BY_PATH, Kind

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass
class RequestInfo:
    """A request as the API server understands it (apiserver's request.RequestInfo)."""

    method: str
    path: str
    verb: str
    kind: Kind | None = None
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    rest: str = ""  # what follows the subresource (a proxied path)
    resource_request: bool = False
    query: Any = None


def parse_request(method: str, path: str, query: Any) -> RequestInfo:
    """Verb and resource attributes from method, path and query (RequestInfoFactory.NewRequestInfo)."""
    info = RequestInfo(method=method, path=path, verb=method.lower(), query=query)
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        info.version, rest = parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        info.group, info.version, rest = parts[1], parts[2], parts[3:]
    else:
        return info  # non-resource: discovery, /version, ...
    info.resource_request = True
    info.verb = _METHOD_VERBS.get(method, method.lower())
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]
        info.rest = "/".join(rest[3:])
    if info.verb == "get" and not info.name:
        info.verb = "watch" if query.get("watch") in ("true", "1") else "list"
    elif info.verb == "delete" and not info.name:
        info.verb = "deletecollection"
    if info.verb in ("list", "watch") and not info.name:
        for term in (query.get("fieldSelector") or "").split(","):
            key, _, value = term.partition("=")
            if key.strip() == "metadata.name" and value and not value.startswith("="):
                info.name = value.strip()  # as the API server does, for resourceNames
    info.kind = BY_PATH.get((info.group, info.version, info.resource))
    return info
