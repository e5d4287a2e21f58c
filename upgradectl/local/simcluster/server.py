"""The simulated Kubernetes API server: HTTP on 127.0.0.1 (aiohttp), in front of `ObjectStore`.

Per request, as kube-apiserver orders it: faults (`FaultBook`: what stands in front of it failing),
authentication (bearer token -> `User`), request info (verb, API group, resource, subresource,
namespace, name, parsed as apiserver's RequestInfoFactory does), RBAC authorization (`Authorizer`),
then the verb:

- get / list (labelSelector, fieldSelector, limit + continue) / watch (JSON lines; resourceVersion,
  timeoutSeconds) / create / update (PUT; resourceVersion precondition) / patch (merge, strategic
  merge as merge, JSON patch) / delete / deletecollection, on every resource of `kinds.KINDS`;
  the ``status`` subresource of those that have one; ``pods/log`` and ``services/proxy`` through
  hooks (the simulation answers them).
- Discovery (/version, /api, /api/v1, /apis, /apis/<g>, /apis/<g>/<v>) from `kinds`.
- Protobuf writes (client-go's default for built-in kinds, e.g. a real helm's) are recorded as
  `ProtobufWrite` and refused with 415: the simulation reads JSON only.
- Errors are the API server's Status objects (NotFound, AlreadyExists, Conflict, Forbidden, ...).

What it does not do: admission, defaulting and validation of specs, finalizers and graceful
deletion, garbage collection (the Job controller deletes its pods), server-side apply, and a
status on create or on a main-resource write is kept as sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
from aiohttp.web_request import BaseRequest

from upgradectl.local.simcluster.api_errors import StoreError
from upgradectl.local.simcluster.faults import FaultBook, Outage
from upgradectl.local.simcluster.kinds import Kind, discovery_document
from upgradectl.local.simcluster.rbac import Attributes, Authorizer, Identities, User
from upgradectl.local.simcluster.request_info import RequestInfo, parse_request
from upgradectl.local.simcluster.selectors import SelectorError, parse_field_selector, parse_label_selector
from upgradectl.local.simcluster.store import ObjectStore
from upgradectl.local.simcluster.watches import Watch

PROTOBUF = "application/vnd.kubernetes.protobuf"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class ProtobufWrite:
    """A write the API server could not accept because it came as protobuf (e.g. from helm)."""

    time: float
    method: str
    path: str
    body: bytes


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}  # fmt: skip
    if details:
        body["details"] = details
    return body


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(payload, separators=(",", ":")).encode(), status=status,
                                content_type="application/json", headers=headers)  # fmt: skip


def error_response(error: StoreError, headers: dict[str, str] | None = None) -> aiohttp.web.Response:
    return json_response(status_body(error.code, error.reason, error.message, error.details), error.code, headers)


LogHook = Callable[[RequestInfo], aiohttp.web.StreamResponse]
ProxyHook = Callable[[RequestInfo], Awaitable[aiohttp.web.StreamResponse]]
Observer = Callable[[RequestInfo, "User | None", Any, int], None]  # user None: a fault answered first


@dataclass
class Hooks:
    """What the simulation answers itself, and who wants to see requests."""

    pod_log: LogHook | None = None
    service_proxy: ProxyHook | None = None
    # called after every resource request with (request info, user, parsed body or None, status)
    observers: list[Observer] = field(default_factory=list)


class ApiServer:
    """The HTTP server. Everything runs on one event loop: store writes never interleave."""

    def __init__(
        self, store: ObjectStore, authorizer: Authorizer, identities: Identities, faults: FaultBook, hooks: Hooks
    ) -> None:
        self.store, self.authorizer, self.identities, self.faults, self.hooks = (
            store, authorizer, identities, faults, hooks)  # fmt: skip
        self.protobuf_writes: list[ProtobufWrite] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._http: aiohttp.web.Server | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------------

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._http = aiohttp.web.Server(self._handle, access_log=None)
        self._listener = await loop.create_server(self._http, host, port, reuse_address=True)
        sock = self._listener.sockets[0]
        self.host, self.port = host, int(sock.getsockname()[1])
        return self.port

    async def close(self) -> None:
        self._closed = True
        self.store.close_all_watches()
        if self._listener is not None:
            self._listener.close()
        if self._http is not None:
            await self._http.shutdown(timeout=2)
        if self._listener is not None:
            await self._listener.wait_closed()

    def refuse(self, outage: Outage) -> None:
        """Stop listening and cut every open connection; listen again when the outage ends."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._cut_connections(outage)
        loop = asyncio.get_running_loop()
        loop.call_later(max(0.0, outage.started + outage.seconds - time.monotonic()),
                        lambda: loop.create_task(self.listen_again(outage)))  # fmt: skip

    def _cut_connections(self, outage: Outage) -> None:
        for handler in self._http.connections if self._http is not None else []:
            transport = getattr(handler, "transport", None)
            if transport is not None:
                outage.count()
                _reset(transport)

    async def listen_again(self, outage: Outage) -> None:
        """The outage is over (its time, or ended early): listen on the same port again."""
        outage.ended = True
        if self._closed or self._http is None or self._listener is not None:
            return
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._http, self.host, self.port, reuse_address=True)

    # --- one request ------------------------------------------------------------------------------

    async def _handle(self, request: BaseRequest) -> aiohttp.web.StreamResponse:
        outage = self.faults.outage()
        if outage is not None and outage.mode == "reset":
            outage.count()
            if request.transport is not None:
                _reset(request.transport)
            return aiohttp.web.Response(status=503)  # never reaches the client: the connection is gone
        method, path = request.method, request.path
        info = parse_request(method, path, request.query)
        body: Any = None
        raw = await request.read() if method in WRITE_METHODS and request.can_read_body else b""
        content_type = request.headers.get("Content-Type", "")

        fault = self.faults.take(method, path)
        if fault is not None:
            if info.resource_request:
                self._observe(info, None, _try_json(raw, content_type), fault.status)
            headers = {"Retry-After": str(fault.retry_after or 1)} if fault.status in (429, 503) else None
            return error_response(StoreError(fault.status, fault.reason, f"simulated fault on {path}"), headers)

        if content_type.startswith(PROTOBUF) and method in WRITE_METHODS:
            self.protobuf_writes.append(ProtobufWrite(time.time(), method, path, raw))
            message = "the simulated API server accepts JSON only; this protobuf write was recorded, not applied"
            return error_response(StoreError(415, "UnsupportedMediaType", message))

        user = self.identities.authenticate(request.headers.get("Authorization"))
        if not info.resource_request:
            document = discovery_document(path) if method in ("GET", "HEAD") else None
            if document is None:
                return error_response(StoreError(404, "NotFound", "the server could not find the requested resource"))
            return json_response(document)

        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                self._observe(info, user, None, 400)
                return error_response(
                    StoreError(400, "BadRequest", f"the body of the request was not valid JSON: {exc}")
                )
        status = 500
        try:
            response = await self._serve(request, info, user, body, content_type)
            status = response.status
            return response
        except StoreError as error:
            status = error.code
            return error_response(error)
        finally:
            self._observe(info, user, body, status)

    def _observe(self, info: RequestInfo, user: User | None, body: Any, status: int) -> None:
        for observer in self.hooks.observers:
            observer(info, user, body, status)

    async def _serve(
        self, request: BaseRequest, info: RequestInfo, user: User, body: Any, content_type: str
    ) -> aiohttp.web.StreamResponse:
        kind = info.kind
        if kind is None or (info.subresource and not kind.has_subresource(info.subresource)):
            raise StoreError(404, "NotFound", "the server could not find the requested resource")
        if not kind.namespaced:
            # /api/v1/namespaces/<name>: the namespace attribute is the object itself (RBAC sees it so)
            namespace = ""
        elif info.namespace:
            namespace = info.namespace
        elif info.verb in ("list", "watch"):
            namespace = ""  # every namespace
        else:
            raise StoreError(404, "NotFound", "the server could not find the requested resource")
        attrs = Attributes(user, info.verb, info.namespace, info.group, info.resource, info.subresource, info.name,
                           info.path)  # fmt: skip
        denied = self.authorizer.check(attrs)
        if denied is not None:
            raise denied

        if info.subresource == "log":
            if info.verb != "get" or self.hooks.pod_log is None:
                raise StoreError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            return self.hooks.pod_log(info)
        if info.subresource == "proxy":
            if self.hooks.service_proxy is None:
                raise StoreError(404, "NotFound", "the server could not find the requested resource")
            return await self.hooks.service_proxy(info)

        verb, store = info.verb, self.store
        if verb == "get":
            obj = store.get(kind.key, namespace, info.name)
            if obj is None:
                raise StoreError(404, "NotFound", f'{kind.qualified} "{info.name}" not found',
                                 {"name": info.name, "group": kind.group, "kind": kind.plural} if kind.group
                                 else {"name": info.name, "kind": kind.plural})  # fmt: skip
            return json_response(obj)
        if verb in ("list", "watch", "deletecollection"):
            try:
                labels = parse_label_selector(info.query.get("labelSelector"))
                fields = parse_field_selector(info.query.get("fieldSelector"), kind.plural)
            except SelectorError as exc:
                raise StoreError(400, "BadRequest", str(exc)) from exc
            scope = namespace or None
            if verb == "watch":
                return await self._watch(request, info, kind, scope, labels, fields)
            if verb == "deletecollection":
                doomed = list(store.list_objects(kind.key, scope, labels, fields, None, None).items)
                for obj in doomed:
                    meta = obj.get("metadata") or {}
                    store.delete(kind.key, meta.get("namespace", ""), meta["name"])
                return json_response(self._list_body(kind, doomed, store.revision, None, None))
            limit = _int(info.query.get("limit"))
            page = store.list_objects(kind.key, scope, labels, fields, limit, info.query.get("continue") or None)
            return json_response(self._list_body(kind, page.items, page.resource_version, page.continue_token,
                                                 page.remaining))  # fmt: skip
        if not isinstance(body, dict) and not (verb == "patch" and isinstance(body, list)):
            if verb == "delete":
                body = {}
            else:
                raise StoreError(400, "BadRequest", "the request body must be a JSON object")
        if verb == "create":
            return json_response(store.create(kind.key, body, namespace or None), 201)
        if verb == "update":
            return json_response(
                store.replace(kind.key, namespace, info.name, body, subresource=info.subresource or None)
            )
        if verb == "patch":
            if "json-patch" in content_type:
                patch_type = "json"
            elif "merge-patch" in content_type or "strategic-merge-patch" in content_type:
                patch_type = "merge"
            else:
                raise StoreError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                                              "accepted media types include: application/json-patch+json, "
                                                              "application/merge-patch+json, "
                                                              "application/strategic-merge-patch+json")  # fmt: skip
            patched = store.patch(kind.key, namespace, info.name, body, content_type=patch_type,
                                  subresource=info.subresource or None)  # fmt: skip
            return json_response(patched)
        if verb == "delete":
            return json_response(store.delete(kind.key, namespace, info.name))
        raise StoreError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _list_body(
        kind: Kind, items: list[Any], revision: int, continue_token: str | None, remaining: int | None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if continue_token:
            meta["continue"] = continue_token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        return {"kind": f"{kind.kind}List", "apiVersion": kind.group_version, "metadata": meta, "items": items}

    async def _watch(
        self, request: BaseRequest, info: RequestInfo, kind: Kind, namespace: str | None, labels: Any, fields: Any
    ) -> aiohttp.web.StreamResponse:
        """A watch: JSON lines until the client leaves, ``timeoutSeconds`` pass or the server stops."""
        watch = Watch(kind, namespace, labels, fields)
        self.store.open_watch(watch, info.query.get("resourceVersion"))
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            timeout = _int(info.query.get("timeoutSeconds"))
            deadline = time.monotonic() + timeout if timeout else None
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                try:
                    event = await asyncio.wait_for(watch.queue.get(), left)
                except TimeoutError:
                    break
                if event is None:
                    break
                await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        except ConnectionError:
            pass
        finally:
            self.store.close_watch(watch)
        return response


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _try_json(raw: bytes, content_type: str) -> Any:
    if not raw or content_type.startswith(PROTOBUF):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _reset(transport: Any) -> None:
    """Close a connection with a TCP RST (SO_LINGER 0), as a crashed or unreachable server does."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
