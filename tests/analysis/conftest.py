"""A tiny HTTP server on 127.0.0.1 whose answers a test scripts (status, body, delay), and a port where
nothing listens: the providers' outside world when it misbehaves."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from upgrader.analysis.measurements import Cohort
from upgrader.analysis.providers import Target
from upgrader.analysis.templating import TemplateValues


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0


@dataclass
class ScriptedServer:
    url: str
    routes: dict[str, Answer] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (raw path, headers)

    def answer(
        self, path: str, status: int = 200, body: Any = None, *, raw: bytes | None = None, delay: float = 0.0
    ) -> None:
        self.routes[path] = Answer(status, raw if raw is not None else json.dumps(body).encode(), delay)


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    holder: dict[str, ScriptedServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            server = holder["server"]
            server.requests.append((self.path, dict(self.headers.items())))
            answer = server.routes.get(self.path.split("?")[0], Answer(404, b'{"error": "no route"}'))
            time.sleep(answer.delay)
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except OSError:
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    holder["server"] = ScriptedServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield holder["server"]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def target_for(customer: str, cohort: Cohort = "upgraded", version: str = "v1.2.0", window: float = 300,
               now: datetime | None = None) -> Target:  # fmt: skip
    at = now or datetime.now(UTC)
    return Target(
        cohort, TemplateValues(customer, f"customer-{customer}", "api", version, at - timedelta(seconds=window), at)
    )


TargetFactory = Callable[..., Target]
