"""Request bodies of the local HTTP servers (the local stack's API, the console's proxy)."""

from __future__ import annotations

import http.server
import json

MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit, as API Gateway forwards it


def read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes | None:
    """The request's body; None once a JSON 413 has been answered for one larger than the limit."""
    length = int(handler.headers.get("Content-Length") or 0)
    if length > MAX_BODY_BYTES:
        data = json.dumps({"message": f"request body larger than {MAX_BODY_BYTES} bytes"}).encode("utf-8")
        handler.send_response(413)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return None
    return handler.rfile.read(length) if length > 0 else b""
