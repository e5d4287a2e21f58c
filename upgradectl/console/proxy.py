"""`upgrade-customers console`: the web console on localhost for the API in AWS.

The page and its files are served from the package; every `/api/*` request of the page is forwarded to
the API URL and signed there with SigV4 (botocore's SigV4Auth, service `execute-api`) with the
operator's own credentials from the standard chain, so IAM stays the only authentication: a viewer's
credentials make a read-only console (actions hidden, and refused by API Gateway anyway).

A local server holding the operator's credentials must not sign for anyone else: not for another
local process or user, not for another web page. So:

- it answers only requests whose Host is its own address, `localhost:<port>` (no DNS rebinding);
- it acts only for the browser that opened its sign-in link. The link, printed to the operator's
  terminal and nowhere else (as Jupyter does), holds a random key that works once: it is exchanged for
  an `HttpOnly; SameSite=Strict` session cookie, which `/console/config.json` and every `/api/*`
  request must carry. No page script and no other process can read the cookie, and nothing it can
  fetch hands out the key;
- a request that comes from another web page (an Origin that is not its own, `Sec-Fetch-Site` other
  than same-origin: another site, or another port of localhost, which shares the browser's cookies) is
  refused, and every write must be `Content-Type: application/json` (see upgradectl/loopback.py);
- a request whose target or headers another server could read differently (dot segments, encoded
  slashes, control characters, folded or repeated headers) is refused with 400 before it is signed.
"""

from __future__ import annotations

import http.server
import json
import logging
import re
import secrets
import socketserver
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from upgradectl import console, loopback
from upgradectl.console.signing import Signer
from upgradectl.http_body import read_body

LOGGER = logging.getLogger(__name__)

SIGN_IN_PARAMETER = "token"  # noqa: S105 - a query parameter's name, not a secret
SESSION_COOKIE = "upgrade-console-{port}"  # one per port: every port of localhost shares the browser's cookies
# Request headers the page may send on; everything else (cookies, the browser's own headers) stays here.
FORWARDED_HEADERS = ("Accept", "Content-Type", "Idempotency-Key")
# Headers read here or sent on: one of each, printable ASCII only. (Cookie is parsed apart: other servers on
# localhost may have set cookies of any kind in the same browser.)
CHECKED_HEADERS = ("Host", "Origin", "Sec-Fetch-Site", "Content-Length", "Transfer-Encoding", *FORWARDED_HEADERS)
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # a request target: visible ASCII, no space or control
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# An operator may call this route; a viewer may not (API Gateway answers 403 before any function runs).
# An empty body is a 422 from the function: nothing is planned, written or started.
PROBE = ("POST", "/api/upgrades/plan", b"{}")
PROBE_SECONDS = 300.0


@dataclass
class ProxyState:
    api_url: str
    signer: Signer
    identity: str
    timeout: float = 30.0
    sign_in_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # the link's, used once
    forced_read_only: bool | None = None  # --read-only
    _session: str | None = None  # the cookie's value, once the link was used
    _read_only: bool | None = None
    _probed_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _session_lock: threading.Lock = field(default_factory=threading.Lock)

    def sign_in(self, offered: str) -> str | None:
        """The session for the sign-in key; None for a wrong key or once the key was used (it works once)."""
        with self._session_lock:
            if self._session is not None or not same_secret(offered, self.sign_in_key):
                return None
            self._session = secrets.token_urlsafe(32)
            return self._session

    def is_session(self, offered: str) -> bool:
        session = self._session
        return session is not None and same_secret(offered, session)

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

    do_PUT = do_DELETE = do_PATCH  # noqa: N815

    def _handle(self) -> None:
        problem = request_problem(self.path, self.headers)
        if problem is not None:
            self._send_json(400, {"error": "BadRequest", "message": problem})
            return
        if not self._host_is_ours():
            self._send_json(
                421, {"error": "MisdirectedRequest", "message": "this console answers only on its own address"}
            )
            return
        refusal = loopback.origin_refusal(self.headers)
        if refusal is not None:
            self._send_json(refusal.status, refusal.body())
            return
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if self.command == "GET" and parts.path in console.PAGE_PATHS and any(k == SIGN_IN_PARAMETER for k, _ in query):
            self._sign_in(parts.path, query)
            return
        if parts.path.startswith("/api/") or parts.path == console.CONFIG_PATH:
            refusal = self._session_refusal()
            if refusal is not None:
                self._send_json(refusal.status, refusal.body())
                return
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

    def _sign_in(self, path: str, query: list[tuple[str, str]]) -> None:
        """The sign-in link: its key, once, for a session cookie; then the page without the key in its URL."""
        offered = [value for name, value in query if name == SIGN_IN_PARAMETER]
        session = self.server.state.sign_in(offered[0]) if len(offered) == 1 else None
        if session is None:
            message = (
                "This sign-in link is not valid: it was already used (it works once), or it belongs to another "
                "run of `upgrade-customers console`. Use the browser that opened it, or restart the console "
                "for a new link.\n"
            )
            self._send(403, "text/plain; charset=utf-8", message.encode(), console.SECURITY_HEADERS)
            return
        rest = urllib.parse.urlencode([(name, value) for name, value in query if name != SIGN_IN_PARAMETER])
        cookie = f"{self.server.cookie_name}={session}; Path=/; HttpOnly; SameSite=Strict"
        LOGGER.info("signed in: the browser that opened the link now holds the console's session")
        self._send(
            303,
            "text/plain; charset=utf-8",
            b"",
            {**console.SECURITY_HEADERS, "Location": path + (f"?{rest}" if rest else ""), "Set-Cookie": cookie},
        )

    def _session_refusal(self) -> loopback.Refusal | None:
        """Why config.json or an API request is not answered: another page, or not the signed-in browser."""
        site = self.headers.get("Sec-Fetch-Site")
        if site not in (None, "same-origin", "none"):
            return loopback.Refusal(
                403, "CrossSite", f"requests from other web pages are not signed (Sec-Fetch-Site: {site})"
            )
        name = self.server.cookie_name
        for header in self.headers.get_all("Cookie") or []:
            for pair in header.split(";"):
                key, _, value = pair.strip().partition("=")
                if key == name and self.server.state.is_session(value):
                    return None
        return loopback.Refusal(
            401,
            "SignInRequired",
            "this console acts only for the browser that opened its sign-in link: open the link "
            "`upgrade-customers console` printed in its terminal",
        )

    def _proxy(self, parts: urllib.parse.SplitResult) -> None:
        state = self.server.state
        refusal = loopback.json_write_refusal(self.command, self.headers)
        if refusal is not None:
            self._send_json(refusal.status, refusal.body())
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

    @property
    def cookie_name(self) -> str:
        return SESSION_COOKIE.format(port=self.port)

    @property
    def sign_in_url(self) -> str:
        """The link for the operator's terminal (and nowhere else): the page, with the one-time key."""
        key = urllib.parse.quote(self.state.sign_in_key, safe="")
        return f"http://localhost:{self.port}/admin/queues?{SIGN_IN_PARAMETER}={key}"


def same_secret(offered: str, secret: str) -> bool:
    """Constant-time comparison that is simply False for anything not ASCII (compare_digest would raise)."""
    try:
        data = offered.encode("ascii")
    except UnicodeEncodeError:
        return False
    return secrets.compare_digest(data, secret.encode("ascii"))


def request_problem(target: str, headers: Any) -> str | None:
    """Why a request is refused before anything else looks at it; None when it is plain.

    Refused: a target that is not a path of visible ASCII; a path with `.`/`..` or empty segments,
    encoded slashes or backslashes, encoded control characters or broken percent-escapes (API Gateway
    or a server behind it could resolve them to another stage or route than the one this console
    checked); a folded header; a header read or sent on here that is repeated or not printable ASCII;
    a Transfer-Encoding (bodies come with a Content-Length)."""
    if not target.startswith("/") or not _PRINTABLE.fullmatch(target):
        return "the request target must be a path of visible ASCII characters"
    path = target.split("?", 1)[0].split("#", 1)[0]
    if _PERCENT.search(path):
        return "the path has a '%' that is not a percent-escape"
    segments = path.split("/")[1:]
    for index, raw in enumerate(segments):
        segment = urllib.parse.unquote(raw)
        if segment in (".", "..") or (not segment and index < len(segments) - 1):
            return "the path has an empty, '.' or '..' segment"
        if "/" in segment or "\\" in segment:
            return "the path has an encoded slash or a backslash"
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
            return "the path has an encoded control character"
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            return f"header {name} is folded over several lines"
    for name in CHECKED_HEADERS:
        values = headers.get_all(name) or []
        if len(values) > 1:
            return f"header {name} is sent more than once"
        if values and not _HEADER_VALUE.fullmatch(values[0]):
            return f"header {name} has a control or non-ASCII character"
    if headers.get("Transfer-Encoding") is not None:
        return "Transfer-Encoding is not accepted: send the body with a Content-Length"
    return None
