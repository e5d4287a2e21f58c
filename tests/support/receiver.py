"""A real HTTP receiver on 127.0.0.1 for webhook and Slack Web API tests: records what it is sent."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from upgradectl.local.server import write_json

Reply = Callable[[str, dict[str, Any], dict[str, str]], tuple[int, dict[str, Any]]]


class Receiver:
    """POSTs are recorded as (path, JSON body, headers); `reply` decides the answer (default 200 {})."""

    def __init__(self, reply: Reply | None = None) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str], float]] = []
        self.reply: Reply = reply or (lambda path, body, headers: (200, {"ok": True}))
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = dict(self.headers.items())
                with outer._lock:
                    status, answer = outer.reply(self.path, body, headers)
                    if status < 300:
                        outer.requests.append((self.path, body, headers, time.monotonic()))
                write_json(self, status, answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body, _, _ in self.requests if path is None or p == path]
