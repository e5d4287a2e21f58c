"""A small HTTP server on 127.0.0.1 in front of the real registry (upgradectl/local/registry.py), for what the
registry cannot be asked to do by itself: the bearer-token flow (it answers 401 with
`WWW-Authenticate: Bearer realm=…/token,service=…,scope=…` and runs the token realm), basic auth, a 5xx, a HEAD
answer without `Docker-Content-Digest`, a manifest whose bytes were changed on the way. It forwards everything
else unchanged and counts what it saw (`seen`: method, path, status, per request).

Choice (issue 22): the token flow is tested against this server rather than docker-registry's `auth: token`
(which needs JWTs signed by a certificate chain): the client side of the flow is the same, and the registry
behind it is the real one.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE = "local-registry"


@dataclass
class ProxyRules:
    auth: str | None = None  # None, "bearer" or "basic"
    users: dict[str, str] = field(default_factory=dict)  # username -> password (the token realm's, or basic)
    fail_status: int | None = None  # answer every /v2/ request with this status
    strip_digest: bool = False  # drop Docker-Content-Digest from HEAD answers (a GET keeps it)
    corrupt_body: bool = False  # change a byte of every manifest body (GET)
    content_type: str | None = None  # answer manifests with this Content-Type
    announce_digest: str | None = None  # answer manifests with this Docker-Content-Digest (a lying registry)
    token: str = field(default_factory=lambda: secrets.token_hex(16))


class RegistryProxy:
    def __init__(self, upstream: str, rules: ProxyRules | None = None) -> None:
        self.upstream = upstream
        self.rules = rules or ProxyRules()
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802
                proxy._handle(self, "HEAD")

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self, "GET")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> RegistryProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def manifest_requests(self) -> list[tuple[str, str, int]]:
        return [seen for seen in self.seen if "/manifests/" in seen[1]]

    def _answer(
        self, handler: BaseHTTPRequestHandler, method: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        with self._lock:
            self.seen.append((method, handler.path, status))
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(body)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        rules, authorization = self.rules, handler.headers.get("Authorization", "")
        if handler.path.startswith("/token"):
            if rules.users and _basic_user(authorization, rules.users) is None:
                return self._answer(handler, method, 401, {}, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return self._answer(handler, method, 200, {"Content-Type": "application/json"},
                                json.dumps({"token": rules.token, "expires_in": 300}).encode())  # fmt: skip
        if rules.fail_status:
            return self._answer(handler, method, rules.fail_status, {}, b"failing on purpose")
        if rules.auth == "bearer" and authorization != f"Bearer {rules.token}":
            name = handler.path.split("/manifests/")[0].removeprefix("/v2/")
            challenge = f'Bearer realm="http://{self.host}/token",service="{SERVICE}",scope="repository:{name}:pull"'
            return self._answer(handler, method, 401, {"WWW-Authenticate": challenge}, b"")
        if rules.auth == "basic" and _basic_user(authorization, rules.users) is None:
            return self._answer(handler, method, 401, {"WWW-Authenticate": f'Basic realm="{SERVICE}"'}, b"")
        upstream = http.client.HTTPConnection(self.upstream, timeout=10)
        try:
            upstream.request(method, handler.path, headers={"Accept": handler.headers.get("Accept", "")})
            response = upstream.getresponse()
            body, headers = response.read(), {k: v for k, v in response.getheaders() if k.lower() != "content-length"}
        finally:
            upstream.close()
        if "/manifests/" in handler.path and response.status == 200:
            if rules.strip_digest and method == "HEAD":
                headers = {k: v for k, v in headers.items() if k.lower() != "docker-content-digest"}
            if rules.corrupt_body and body:
                body = body.replace(b'"schemaVersion":2', b'"schemaVersion": 2', 1)
            if rules.announce_digest:
                headers = {k: v for k, v in headers.items() if k.lower() != "docker-content-digest"}
                headers["Docker-Content-Digest"] = rules.announce_digest
            if rules.content_type:
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"} | {
                    "Content-Type": rules.content_type
                }
        return self._answer(handler, method, response.status, headers, body)


def _basic_user(authorization: str, users: dict[str, str]) -> str | None:
    if not authorization.startswith("Basic "):
        return None
    try:
        username, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except ValueError:
        return None
    return username if users.get(username) == password and username else None
