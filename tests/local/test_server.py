"""The local HTTP server: routes, API Gateway proxy events, errors, one request per handler instance."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from upgradectl.local.server import ROUTES, LocalApiServer, build_event, match_route


class RecordingInvoker:
    """Stands in for functions.invoke: records events and which instances ran at the same time."""

    def __init__(self, response: Any = None, fail: bool = False, barrier: threading.Barrier | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any], int]] = []
        self.barrier = barrier
        self.response = response
        self.fail = fail
        self.busy: set[tuple[str, int]] = set()
        self.overlaps: list[tuple[str, int]] = []
        self.max_parallel = 0
        self._lock = threading.Lock()

    def __call__(self, name: str, event: dict[str, Any], instance: int) -> Any:
        with self._lock:
            if (name, instance) in self.busy:
                self.overlaps.append((name, instance))
            self.busy.add((name, instance))
            self.max_parallel = max(self.max_parallel, len(self.busy))
            self.events.append((name, event, instance))
        try:
            if self.barrier is not None:  # hold each request until `parties` requests are in handlers at once
                self.barrier.wait(timeout=60)
            if self.fail:
                raise RuntimeError("boom")
            if self.response is not None:
                return self.response
            return {
                "statusCode": 200,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"function": name, "path": event["path"]}),
                "isBase64Encoded": False,
            }
        finally:
            with self._lock:
                self.busy.discard((name, instance))


def serve(invoker: RecordingInvoker, workers: int = 4) -> LocalApiServer:
    return LocalApiServer(
        ("127.0.0.1", 0), workers=workers, invoker=invoker, identity="local:tester", access_log=False
    ).start()


@pytest.fixture
def invoker() -> RecordingInvoker:
    return RecordingInvoker()


@pytest.fixture
def server(invoker: RecordingInvoker) -> Iterator[LocalApiServer]:
    srv = serve(invoker)
    yield srv
    srv.stop()


def http(
    server: LocalApiServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


@pytest.mark.parametrize(
    ("method", "path", "function", "resource", "params"),
    [
        ("POST", "/api/upgrades/deploy", "api_deploy", "/api/upgrades/deploy", {}),
        ("GET", "/api/upgrades", "api_upgrades", "/api/upgrades", {}),
        ("GET", "/api/upgrades/123/status", "api_upgrades", "/api/upgrades/{upgradeId}/status", {"upgradeId": "123"}),
        ("GET", "/api/upgrades/123/logs", "api_upgrades", "/api/upgrades/{upgradeId}/logs", {"upgradeId": "123"}),
        (
            "POST",
            "/api/upgrades/123/continue",
            "api_control",
            "/api/upgrades/{upgradeId}/continue",
            {"upgradeId": "123"},
        ),
        (
            "POST",
            "/api/upgrades/123/rollback/cust_abc123",
            "api_control",
            "/api/upgrades/{upgradeId}/rollback/{customerId}",
            {"upgradeId": "123", "customerId": "cust_abc123"},
        ),
        ("GET", "/api/queue/stats", "api_queue", "/api/queue/stats", {}),
        (
            "GET",
            "/api/upgrades/12/logs/345/output",
            "api_upgrades",
            "/api/upgrades/{upgradeId}/logs/{logId}/output",
            {"upgradeId": "12", "logId": "345"},
        ),
        ("GET", "/api/queue/jobs/upgrade-1-ab", "api_queue", "/api/queue/jobs/{jobId}", {"jobId": "upgrade-1-ab"}),
    ],
)
def test_every_spec_path_maps_to_its_function_and_resource(method, path, function, resource, params):
    route, found, _ = match_route(method, path)
    assert route is not None and (route.function, route.resource, found) == (function, resource, params)


def test_routes_match_the_template():
    # Given the routes template.yaml declares for the API functions
    import re
    from pathlib import Path

    template = (Path(__file__).resolve().parents[2] / "template.yaml").read_text()
    declared = set(re.findall(r"Path: (/api/[^\s]+)\s+Method: (\w+)", template))
    # Then the local server serves exactly those
    assert {(r.resource, r.method.lower()) for r in ROUTES} == declared


def test_request_becomes_a_rest_proxy_event_with_the_local_identity(server, invoker):
    # When a POST with a body and a query string arrives
    code, _, body = http(
        server,
        "POST",
        "/api/upgrades/deploy?dryRun=1&a=x&a=y",
        b'{"component": "api"}',
        {"Content-Type": "application/json", "User-Agent": "pytest"},
    )
    # Then the handler gets an API Gateway REST proxy event
    assert code == 200 and body == {"function": "api_deploy", "path": "/api/upgrades/deploy"}
    name, event, _ = invoker.events[-1]
    assert name == "api_deploy"
    assert event["httpMethod"] == "POST" and event["resource"] == "/api/upgrades/deploy"
    assert event["body"] == '{"component": "api"}' and event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"dryRun": "1", "a": "y"}
    assert event["multiValueQueryStringParameters"] == {"dryRun": ["1"], "a": ["x", "y"]}
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["requestContext"]["identity"]["userArn"] == "local:tester"
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["resourcePath"] == "/api/upgrades/deploy"
    assert event["pathParameters"] is None


def test_path_parameters_are_decoded(server, invoker):
    http(server, "POST", "/api/upgrades/7/rollback/cust%5Fx")
    assert invoker.events[-1][1]["pathParameters"] == {"upgradeId": "7", "customerId": "cust_x"}


def test_unknown_route_is_a_json_404(server, invoker):
    code, headers, body = http(server, "GET", "/api/nothing/here")
    assert code == 404 and headers["Content-Type"] == "application/json"
    assert body == {"message": "no route GET /api/nothing/here"}
    assert invoker.events == []


def test_wrong_method_is_a_json_405_naming_the_allowed_one(server):
    code, headers, body = http(server, "GET", "/api/upgrades/deploy")
    assert code == 405 and headers["Allow"] == "POST" and "POST" in body["message"]


@pytest.mark.parametrize("method", ["PUT", "OPTIONS", "TRACE", "QUERY"])
def test_any_method_a_path_does_not_serve_is_a_json_405(server, invoker, method):
    # http.server alone would answer an HTML 501 for TRACE or QUERY
    code, headers, body = http(server, method, "/api/upgrades/1/status")
    assert (code, headers["Allow"], headers["Content-Type"]) == (405, "GET", "application/json")
    assert body == {"message": f"method {method} not allowed on /api/upgrades/1/status; use GET"}
    assert invoker.events == []


def test_head_gets_the_status_and_headers_without_a_body(server):
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/upgrades/deploy", method="HEAD")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "POST"
    assert refused.value.read() == b""


def test_handler_crash_is_a_502_like_api_gateway(invoker):
    invoker.fail = True
    srv = serve(invoker)
    try:
        code, _, body = http(srv, "GET", "/api/upgrades")
    finally:
        srv.stop()
    assert (code, body) == (502, {"message": "Internal server error"})


def test_handler_status_headers_and_base64_body_pass_through():
    invoker = RecordingInvoker(
        response={
            "statusCode": 409,
            "multiValueHeaders": {"X-A": ["1", "2"]},
            "headers": {"Content-Type": "application/json"},
            "body": "eyJtZXNzYWdlIjogIm5vIn0=",
            "isBase64Encoded": True,
        }
    )
    srv = serve(invoker)
    try:
        code, headers, body = http(srv, "POST", "/api/upgrades/1/continue")
    finally:
        srv.stop()
    assert (code, body, headers["X-A"]) == (409, {"message": "no"}, "1, 2")


def test_concurrent_requests_never_share_a_handler_instance():
    # Given a server with 3 workers whose handlers return only once 3 requests are inside handlers
    # together (no timing: a server running fewer than 3 at once never gets past the barrier)
    barrier = threading.Barrier(3)
    invoker = RecordingInvoker(barrier=barrier)
    srv = serve(invoker, workers=3)
    try:
        # When 9 requests arrive at once
        threads = [threading.Thread(target=http, args=(srv, "GET", "/api/upgrades/1/status")) for _ in range(9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        srv.stop()
    # Then they ran 3 at a time, each on its own instance, and no instance served two at once
    assert not barrier.broken
    assert len(invoker.events) == 9
    assert invoker.overlaps == []
    assert invoker.max_parallel == 3
    assert {instance for _, _, instance in invoker.events} == {0, 1, 2}


def test_stop_frees_the_port_and_joins_the_workers(invoker):
    srv = serve(invoker)
    port = srv.port
    srv.stop()
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # would raise if something still listened
        probe.listen()
    assert not [t for t in threading.enumerate() if t.name.startswith("api-worker-")]


def test_build_event_base64_encodes_binary_bodies():
    route, params, _ = match_route("POST", "/api/upgrades/deploy")
    assert route is not None
    event = build_event(
        route,
        method="POST",
        raw_path="/api/upgrades/deploy",
        query="",
        headers={},
        body=b"\xff\xfe",
        path_params=params,
        source_ip="127.0.0.1",
        user_arn="local:x",
    )
    assert event["isBase64Encoded"] is True and event["body"] == "//4="
