"""The REST API of the template on a local HTTP server: request -> API Gateway proxy event -> handler.

Each route goes to the same Lambda handler API Gateway would call (`functions/api_*/app.py`), with
the same REST proxy event shape (resource, path, pathParameters, query strings, requestContext with
the caller's identity). Without SigV4 the identity is `local:<os user>`.

Requests are served by a fixed pool of worker threads. Worker i always uses handler instance i:
Powertools' resolver keeps the current event on the app object (one invocation at a time, as in a
Lambda execution environment), so a handler instance never serves two requests at once. Each worker
also keeps its own database connection (upgrader.infra.db hands out one per thread).
"""

from __future__ import annotations

import base64
import getpass
import http.server
import json
import logging
import queue
import re
import socket
import socketserver
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from upgradectl import console, loopback
from upgradectl.http_body import read_body
from upgradectl.local import functions

LOGGER = logging.getLogger(__name__)

STAGE = "local"


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # API Gateway resource path, e.g. /api/upgrades/{upgradeId}/status
    function: str
    pattern: re.Pattern[str]


def _route(method: str, resource: str, function: str) -> Route:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(resource))
    return Route(method, resource, function, re.compile(f"^{regex}$"))


# The routes of template.yaml (docs/contracts.md), in the same order.
ROUTES: tuple[Route, ...] = (
    _route("POST", "/api/upgrades/deploy", "api_deploy"),
    _route("POST", "/api/upgrades/plan", "api_upgrades"),
    _route("GET", "/api/upgrades", "api_upgrades"),
    _route("GET", "/api/upgrades/{upgradeId}/status", "api_upgrades"),
    _route("GET", "/api/upgrades/{upgradeId}/analysis", "api_upgrades"),
    _route("GET", "/api/upgrades/{upgradeId}/logs", "api_upgrades"),
    _route("GET", "/api/upgrades/{upgradeId}/logs/{logId}/output", "api_upgrades"),
    _route("POST", "/api/upgrades/{upgradeId}/continue", "api_control"),
    _route("POST", "/api/upgrades/{upgradeId}/rollback/{customerId}", "api_control"),
    _route("POST", "/api/upgrades/{upgradeId}/rollback", "api_control"),
    _route("POST", "/api/upgrades/{upgradeId}/abort", "api_control"),
    _route("POST", "/api/upgrades/{upgradeId}/resume", "api_control"),
    _route("GET", "/api/queue/stats", "api_queue"),
    _route("GET", "/api/queue/jobs/{jobId}", "api_queue"),
    # A static path before the parameter at the same depth (API Gateway prefers it too).
    _route("POST", "/api/customers/sync", "api_sync"),
    _route("GET", "/api/customers/sync/{syncId}", "api_customers"),
    _route("GET", "/api/customers", "api_customers"),
    _route("GET", "/api/customers/{customerId}", "api_customers"),
    _route("PATCH", "/api/customers/{customerId}", "api_customers"),
    _route("GET", "/api/fleet", "api_customers"),
    _route("GET", "/api/compatibility-rules", "api_customers"),
    _route("POST", "/api/compatibility-rules", "api_customers"),
    _route("DELETE", "/api/compatibility-rules/{ruleId}", "api_customers"),
)

Invoker = Callable[[str, dict[str, Any], int], Any]
Page = Callable[[], tuple[str, bytes]]  # (content type, body)


def match_route(method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
    """(route, path parameters, methods allowed on this path). An unknown path allows nothing.

    As in API Gateway, a path that is a static resource (`/api/customers/sync`) is that resource only,
    never a value of a parameter at its place (`/api/customers/{customerId}`)."""
    allowed: list[str] = []
    static = [r for r in ROUTES if "{" not in r.resource and r.pattern.match(path)]
    for route in static or ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, {k: unquote(v) for k, v in found.groupdict().items()}, [route.method]
        allowed.append(route.method)
    return None, {}, allowed


def build_event(
    route: Route,
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    path_params: dict[str, str],
    source_ip: str,
    user_arn: str,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as the AWS_IAM-authorised API sends it to Lambda."""
    multi_query = parse_qs(query, keep_blank_values=True) if query else {}
    try:
        text: str | None = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    path = unquote(raw_path)
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": method,
        "headers": dict(headers) or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.resource,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "accountId": "123456789012",
            "apiId": "local",
            "requestId": str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "protocol": "HTTP/1.1",
            "identity": {
                "userArn": user_arn,
                "caller": user_arn,
                "user": user_arn,
                "accountId": None,
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent") or headers.get("user-agent"),
                "accessKey": None,
            },
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def write_json(handler: http.server.BaseHTTPRequestHandler, status: int, body: Any,
               headers: dict[str, str] | None = None) -> None:  # fmt: skip
    """Answer a request with a JSON body (the local servers and stand-ins share it)."""
    data = json.dumps(body).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


def local_identity() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"local:{user}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: LocalApiServer
    server_version = "upgrade-local"
    protocol_version = "HTTP/1.0"  # one request per connection: a worker is never parked on keep-alive

    def __getattr__(self, name: str) -> Any:
        # http.server calls do_<METHOD>. Every method (GET ... TRACE, QUERY) reaches the router, so
        # one the API does not serve on a path is a JSON 405 naming the allowed ones, never an HTML 501.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        began = time.monotonic()
        parts = urlsplit(self.path)
        refusal = loopback.local_refusal(self.headers, "the local stack")  # DNS rebinding, other web pages
        if refusal is not None:
            self._refuse(began, refusal)
            return
        if self.command in ("GET", "HEAD") and console.is_console_path(parts.path):
            self._send_console(parts.path)
            self._log(began, 200)
            return
        page = self.server.pages.get(parts.path)
        if page is not None and self.command in ("GET", "HEAD"):
            self._send_page(page)
            self._log(began, 200)
            return
        route, params, allowed = match_route(self.command, parts.path)
        if route is None:
            if allowed:
                self._send_json(
                    405,
                    {"message": f"method {self.command} not allowed on {parts.path}; use {', '.join(allowed)}"},
                    {"Allow": ", ".join(allowed)},
                )
            else:
                self._send_json(404, {"message": f"no route {self.command} {parts.path}"})
            self._log(began, 404 if not allowed else 405)
            return
        # no "simple" cross-site write; the spec's bare `curl -X POST` (no browser sends one) still works
        refusal = loopback.json_write_refusal(self.command, self.headers, allow_bare_non_browser=True)
        if refusal is not None:
            self._refuse(began, refusal)
            return
        body = read_body(self)
        if body is None:
            return
        event = build_event(
            route,
            method=self.command,
            raw_path=parts.path,
            query=parts.query,
            headers={k: v for k, v in self.headers.items()},
            body=body,
            path_params=params,
            source_ip=self.client_address[0],
            user_arn=self.server.identity,
        )
        instance = getattr(threading.current_thread(), "instance", 0)
        try:
            response = self.server.invoker(route.function, event, instance)
        except Exception:  # noqa: BLE001 - API Gateway answers an unhandled Lambda error with 502
            LOGGER.error("handler %s failed:\n%s", route.function, traceback.format_exc())
            self._send_json(502, {"message": "Internal server error"})
            self._log(began, 502)
            return
        self._send_proxy_response(response)
        self._log(began, int(response.get("statusCode", 502)) if isinstance(response, dict) else 502)

    def _refuse(self, began: float, refusal: loopback.Refusal) -> None:
        self._send_json(refusal.status, refusal.body())
        self._log(began, refusal.status)

    def _send_console(self, path: str) -> None:
        """The web console (`/admin/queues`, `/`), its files, and its configuration: the local identity."""
        if path == console.CONFIG_PATH:
            config = {"mode": "local", "identity": self.server.identity, "readOnly": False}
            data, content_type = json.dumps(config).encode("utf-8"), "application/json"
        else:
            found = console.asset(path)
            assert found is not None  # is_console_path said so
            data, content_type = found.body, found.content_type
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        for key, value in console.SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_proxy_response(self, response: Any) -> None:
        if not isinstance(response, dict) or "statusCode" not in response:
            LOGGER.error("malformed Lambda proxy response: %r", response)
            self._send_json(502, {"message": "Internal server error"})
            return
        raw = response.get("body") or ""
        data = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode("utf-8")
        headers: dict[str, str] = {}
        for key, values in (response.get("multiValueHeaders") or {}).items():
            headers[key] = ", ".join(str(v) for v in values)
        for key, value in (response.get("headers") or {}).items():
            headers[key] = str(value)
        self.send_response(int(response["statusCode"]))
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_page(self, page: Page) -> None:
        """A local-only page (GET /metrics): not an API route, not in the template."""
        try:
            content_type, data = page()
        except Exception:  # noqa: BLE001 - a broken page answers 500 and says why in the log
            LOGGER.error("page %s failed:\n%s", self.path, traceback.format_exc())
            self._send_json(500, {"message": "Internal server error"})
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        write_json(self, status, body, headers)

    def _log(self, began: float, status: int) -> None:
        if self.server.access_log:
            LOGGER.info("%s %s -> %s (%.0f ms)", self.command, self.path, status, (time.monotonic() - began) * 1000)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass  # access lines go through _log (structured, one place)


class LocalApiServer(socketserver.TCPServer):
    """HTTP server with a fixed pool of worker threads (worker i -> handler instance i)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        workers: int = 4,
        invoker: Invoker | None = None,
        identity: str | None = None,
        access_log: bool = True,
        on_worker_exit: Callable[[], None] | None = None,
        pages: dict[str, Page] | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.pages: dict[str, Page] = dict(pages or {})
        self.invoker: Invoker = invoker or functions.invoke
        self.identity = identity or local_identity()
        self.access_log = access_log
        self._on_worker_exit = on_worker_exit
        self._queue: queue.Queue[tuple[socket.socket, Any] | None] = queue.Queue()
        self._workers = [
            threading.Thread(target=self._work, args=(i,), name=f"api-worker-{i}", daemon=True) for i in range(workers)
        ]
        self._serving: threading.Thread | None = None
        self._stopped = False
        for index, worker in enumerate(self._workers):
            worker.instance = index  # type: ignore[attr-defined]  # read by _Handler._dispatch
            worker.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        self._queue.put((request, client_address))

    def _work(self, index: int) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                request, client_address = item
                try:
                    self.finish_request(request, client_address)
                except Exception:  # noqa: BLE001 - one broken connection must not kill the worker
                    self.handle_error(request, client_address)
                finally:
                    self.shutdown_request(request)
        finally:
            if self._on_worker_exit is not None:
                try:
                    self._on_worker_exit()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    LOGGER.debug("worker exit hook failed", exc_info=True)

    def start(self) -> LocalApiServer:
        """Serve in a background thread."""
        self._serving = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="api-server", daemon=True
        )
        self._serving.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let the workers finish their current request, close the socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._serving is not None:
            self.shutdown()
            self._serving.join(timeout=10)
            self._serving = None
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        self.server_close()
