"""A local stand-in for API Gateway's AWS_IAM authorization, with known credentials.

It recomputes the SigV4 signature of every request with botocore from what it received (method, path
and query, the signed headers, the body) and the secret of the access key named in the Authorization
header, refuses a bad or stale signature with 403 as API Gateway does, applies the people policies
(the viewer's key may only GET; the operator's may call everything), strips the stage and forwards
what passes to the local stack. Every request is recorded with the verdict.
"""

from __future__ import annotations

import datetime
import hmac
import http.server
import json
import re
import socketserver
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
STAGE = "/v1"
OPERATOR = ("AKIAOPERATOR00000001", "operator-secret-key-0000000000000000000000")
VIEWER = ("AKIAVIEWER0000000001", "viewer-secret-key-00000000000000000000000000")
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass
class Seen:
    method: str
    path: str
    access_key: str | None
    verdict: str  # "ok" or why it was refused


def expected_signature(
    method: str, url: str, headers: dict[str, str], body: bytes, signed: list[str], secret: str, key: str
) -> str:
    """The signature botocore computes for this request, from the headers that were signed."""
    request = AWSRequest(method=method, url=url, data=body, headers={h: headers[h] for h in signed if h in headers})
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(key, secret), "execute-api", REGION)
    canonical = auth.canonical_request(request)
    return auth.signature(auth.string_to_sign(request, canonical), request)


@dataclass
class Gateway:
    upstream: str  # the local stack, e.g. http://127.0.0.1:3100
    keys: dict[str, str] = field(default_factory=lambda: dict([OPERATOR, VIEWER]))
    seen: list[Seen] = field(default_factory=list)

    def verdict(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, str | None]:
        found = _AUTH.match(headers.get("authorization", ""))
        if found is None:
            return "missing or malformed Authorization", None
        key = found["key"]
        if key not in self.keys:
            return "unknown access key", key
        if (found["region"], found["service"]) != (REGION, "execute-api"):
            return f"wrong scope {found['region']}/{found['service']}", key
        stamp = headers.get("x-amz-date", "")
        try:
            when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            return "no X-Amz-Date", key
        if abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) > 300 or stamp[:8] != found["date"]:
            return "stale signature", key
        signed = found["signed"].split(";")
        if "host" not in signed:
            return "host not signed", key
        url = f"http://{headers['host']}{path}"
        wanted = expected_signature(method, url, headers, body, signed, self.keys[key], key)
        if not hmac.compare_digest(wanted, found["signature"]):
            return "signature mismatch", key
        if key == VIEWER[0] and method not in ("GET", "HEAD"):
            return "viewer policy: not authorized to perform execute-api:Invoke", key
        return "ok", key


class _Handler(http.server.BaseHTTPRequestHandler):
    server: GatewayServer
    protocol_version = "HTTP/1.0"

    def _handle(self) -> None:
        gateway = self.server.gateway
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        verdict, key = gateway.verdict(self.command, self.path, headers, body)
        gateway.seen.append(Seen(self.command, self.path, key, verdict))
        if verdict != "ok":
            self._send(403, "application/json", json.dumps({"Message": verdict}).encode())
            return
        if not self.path.startswith(STAGE + "/"):
            self._send(403, "application/json", b'{"Message": "Missing Authentication Token"}')
            return
        forward = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept", "idempotency-key")}
        request = urllib.request.Request(
            gateway.upstream + self.path[len(STAGE) :], data=body or None, method=self.command, headers=forward
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local stack
                self._send(response.status, response.headers.get("Content-Type", ""), response.read())
        except urllib.error.HTTPError as exc:
            self._send(exc.code, exc.headers.get("Content-Type", ""), exc.read())

    do_GET = do_POST = do_PATCH = do_HEAD = _handle  # noqa: N815

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class GatewayServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gateway = gateway
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{STAGE}"

    def start(self) -> GatewayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
