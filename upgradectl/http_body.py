"""Request bodies of the local HTTP servers (the local stack's API, the console's proxy)."""

from __future__ import annotations

import http.server
import json

MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit, as API Gateway forwards it


def read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes | None:
    """The request's body; None once a JSON 400 (a Content-Length that is not a number) or 413 (larger than
    the limit) has been answered."""
    sent = (handler.headers.get("Content-Length") or "0").strip()
    if not sent.isdecimal() or not sent.isascii():
        _refuse(handler, 400, "Content-Length is not a number")
        return None
    length = int(sent)
    if length > MAX_BODY_BYTES:
        _refuse(handler, 413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return None
    return handler.rfile.read(length) if length > 0 else b""


def _refuse(handler: http.server.BaseHTTPRequestHandler, status: int, message: str) -> None:
    data = json.dumps({"message": message}).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
