"""`upgrade-customers console`: the web console on localhost for the API in AWS.

The page and its files are served from the package; every `/api/*` request of the page is forwarded to
the API URL and signed there with SigV4 (botocore's SigV4Auth, service `execute-api`) with the
operator's own credentials from the standard chain, so IAM stays the only authentication: a viewer's
credentials make a read-only console (actions hidden, and refused by API Gateway anyway).

A local server holding the operator's credentials must not sign for anyone else: it only answers
requests whose Host is its own address (no DNS rebinding), and an `/api/*` request must carry the
per-process token that only its own page can read (no cross-site request is ever signed).
"""

from __future__ import annotations

import http.server
import json
import logging
import secrets
import socketserver
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from upgradectl import console
from upgradectl.client import region_from_url, should_sign
from upgradectl.http_body import read_body

LOGGER = logging.getLogger(__name__)

TOKEN_HEADER = "X-Console-Token"  # noqa: S105 - a header name, not a secret
# Request headers the page may send on; everything else (cookies, the browser's own headers) stays here.
FORWARDED_HEADERS = ("Accept", "Content-Type", "Idempotency-Key")
# An operator may call this route; a viewer may not (API Gateway answers 403 before any function runs).
# An empty body is a 422 from the function: nothing is planned, written or started.
PROBE = ("POST", "/api/upgrades/plan", b"{}")
PROBE_SECONDS = 300.0


class ConsoleSetupError(Exception):
    """No credentials or no region for signing."""


@dataclass
class Signer:
    """Signs requests for `execute-api` with credentials refreshed as botocore refreshes them (SSO, roles)."""

    region: str
    credentials: Any  # botocore.credentials.Credentials (refreshable)

    def headers(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(self.credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())

    @property
    def access_key(self) -> str:
        return str(self.credentials.get_frozen_credentials().access_key)


def make_signer(api_url: str, *, region: str | None, profile: str | None) -> Signer:
    """The operator's credentials (standard chain or `profile`) and the API's region."""
    import os

    import botocore.session
    from botocore.exceptions import BotoCoreError

    region = region or region_from_url(api_url) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConsoleSetupError("SigV4 needs a region: pass --region or set AWS_REGION")
    try:
        credentials = botocore.session.Session(profile=profile).get_credentials()
    except BotoCoreError as exc:
        raise ConsoleSetupError(f"cannot load AWS credentials: {exc}") from exc
    if credentials is None:
        raise ConsoleSetupError(
            "no AWS credentials found (environment, ~/.aws, SSO, instance role); run `aws sso login` or set AWS_PROFILE"
        )
    return Signer(region=region, credentials=credentials)


def caller_identity(signer: Signer, api_url: str) -> str:
    """Who the console acts as: the caller's ARN from STS for the API in AWS, else the access key id."""
    if should_sign(api_url):
        try:
            import boto3

            frozen = signer.credentials.get_frozen_credentials()
            sts = boto3.client(
                "sts",
                region_name=signer.region,
                aws_access_key_id=frozen.access_key,
                aws_secret_access_key=frozen.secret_key,
                aws_session_token=frozen.token,
            )
            return str(sts.get_caller_identity()["Arn"])
        except Exception:  # noqa: BLE001 - only a label: the API still identifies the caller by the signature
            LOGGER.debug("sts get-caller-identity failed", exc_info=True)
    return f"AWS access key {signer.access_key}"


@dataclass
class ProxyState:
    api_url: str
    signer: Signer
    identity: str
    timeout: float = 30.0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    forced_read_only: bool | None = None  # --read-only
    _read_only: bool | None = None
    _probed_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def forward(self, method: str, path_and_query: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """Send one request to the API, signed; (status, content type, body). Never raises for HTTP errors."""
        url = self.api_url + path_and_query
        send = {"User-Agent": "upgrade-customers-console/0.1", **headers}
        if body:
            send.setdefault("Content-Type", "application/json")
        signed = self.signer.headers(method, url, body, send)
        request = urllib.request.Request(url, data=body or None, method=method, headers=signed)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                return response.status, response.headers.get("Content-Type", "application/json"), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", "application/json"), exc.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            message = {
                "error": "ApiUnreachable",
                "message": f"cannot reach the upgrade API at {self.api_url}: {reason}",
            }
            return 502, "application/json", json.dumps(message).encode()

    def read_only(self) -> bool:
        """Whether the operator's credentials are refused the operator routes (probed, kept 5 minutes)."""
        if self.forced_read_only is not None:
            return self.forced_read_only
        with self._lock:
            if self._read_only is None or time.monotonic() - self._probed_at > PROBE_SECONDS:
                method, path, body = PROBE
                status, _, _ = self.forward(method, path, body, {"Content-Type": "application/json"})
                self._read_only = status == 403
                self._probed_at = time.monotonic()
            return self._read_only

    def saw_forbidden(self) -> None:
        with self._lock:
            self._read_only, self._probed_at = True, time.monotonic()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "upgrade-console"
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        if not self._host_is_ours():
            self._send_json(
                421, {"error": "MisdirectedRequest", "message": "this console answers only on its own address"}
            )
            return
        parts = urllib.parse.urlsplit(self.path)
        if parts.path.startswith("/api/"):
            self._proxy(parts)
        elif self.command in ("GET", "HEAD") and parts.path == console.CONFIG_PATH:
            state = self.server.state
            self._send_json(
                200,
                {
                    "mode": "aws",
                    "apiUrl": state.api_url,
                    "apiHost": urllib.parse.urlsplit(state.api_url).hostname,
                    "identity": state.identity,
                    "readOnly": state.read_only(),
                    "token": state.token,
                },
                console.SECURITY_HEADERS,
            )
        elif self.command in ("GET", "HEAD") and (found := console.asset(parts.path)) is not None:
            self._send(200, found.content_type, found.body, console.SECURITY_HEADERS)
        else:
            self._send_json(404, {"message": f"no route {self.command} {parts.path}"})

    def _host_is_ours(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        port = self.server.port
        return host in {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}

    def _proxy(self, parts: urllib.parse.SplitResult) -> None:
        state = self.server.state
        if not secrets.compare_digest(self.headers.get(TOKEN_HEADER, ""), state.token):
            self._send_json(
                403, {"error": "ConsoleTokenMissing", "message": f"requests need the console's {TOKEN_HEADER}"}
            )
            return
        origin = self.headers.get("Origin")
        if origin and urllib.parse.urlsplit(origin).netloc.lower() != (self.headers.get("Host") or "").lower():
            self._send_json(403, {"error": "CrossOrigin", "message": "cross-origin requests are not signed"})
            return
        body = read_body(self)
        if body is None:
            return
        headers = {k: v for k in FORWARDED_HEADERS if (v := self.headers.get(k))}
        path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
        status, content_type, data = state.forward(self.command, path_and_query, body, headers)
        if status == 403 and self.command not in ("GET", "HEAD"):
            state.saw_forbidden()
        LOGGER.info("%s %s -> %s", self.command, path_and_query, status)
        self._send(status, content_type, data)

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, "application/json", json.dumps(body).encode("utf-8"), headers)

    def _send(self, status: int, content_type: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {"Cache-Control": "no-store"}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass


class ConsoleServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: ProxyState) -> None:
        super().__init__(address, _Handler)
        self.state = state

    @property
    def port(self) -> int:
        return int(self.server_address[1])
