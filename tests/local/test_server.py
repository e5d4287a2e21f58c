"""The local HTTP server: routes, API Gateway proxy events, errors, one request per handler instance."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from upgradectl.local.gateway import ROUTES, build_event, match_route
from upgradectl.local.server import LocalApiServer

JSON = {"Content-Type": "application/json"}


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
    http(server, "POST", "/api/upgrades/7/rollback/cust%5Fx", headers=JSON)
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
        code, headers, body = http(srv, "POST", "/api/upgrades/1/continue", headers=JSON)
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


def raw_request(server: LocalApiServer, head: bytes) -> tuple[int, Any]:
    """Send bytes as they are (no Host added, nothing normalised); (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2] or b"null")


# --- who the local stack answers: loopback Host, its own Origin, JSON writes (upgradectl/loopback.py) ----


@pytest.mark.parametrize(
    "host",
    ["rebind.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}", "localhost.evil.example:{port}",
     "10.0.0.5:{port}", "localhost:nope", "[::1", ""],
)  # fmt: skip
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/upgrades/1/continue"), ("GET", "/api/upgrades"),
                                              ("GET", "/console/config.json"), ("GET", "/admin/queues")])  # fmt: skip
def test_a_host_that_is_not_a_loopback_name_is_refused(server, invoker, host, method, path):
    """DNS rebinding: a page whose own name now resolves to 127.0.0.1 is same-origin with the stack in its
    browser, so only the Host names it. Breakage tried: no Host check in `_dispatch` (main): every case
    reached the handler or the page; a loopback test by prefix (`name.startswith(("localhost", "127."))`)
    let `localhost.evil.example` and `127.0.0.1.evil.example` through. Both failed this test."""
    code, _, body = http(server, method, path, headers={"Host": host.format(port=server.port), **JSON})
    assert code == 421, body
    assert body["error"] == "MisdirectedRequest" and "localhost, 127.0.0.1 or [::1]" in body["message"]
    assert invoker.events == []


def test_a_request_without_host_is_refused(server, invoker):
    code, body = raw_request(
        server, b"POST /api/upgrades/1/continue HTTP/1.0\r\nContent-Type: application/json\r\n\r\n"
    )
    assert code == 421 and "(Host: none)" in body["message"]
    assert invoker.events == []


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST:{port}",
                                  "127.0.0.2:{port}", "localhost", "localhost:8080"])  # fmt: skip
def test_every_loopback_name_is_answered(server, invoker, host):
    """Any port: behind a port mapping (a container) the browser names the mapped one."""
    code, _, _ = http(
        server, "POST", "/api/upgrades/1/continue", headers={"Host": host.format(port=server.port), **JSON}
    )
    assert code == 200 and len(invoker.events) == 1


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://localhost:{other}", "http://127.0.0.1:{port}", "null", "http://localhost"]
)  # fmt: skip
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/upgrades/1/continue"), ("GET", "/api/upgrades")])
def test_a_request_from_another_origin_is_refused(server, invoker, origin, method, path):
    """Another site, the same host on another port, another name for it, a sandboxed frame: all other
    origins. Breakage tried: no Origin check (main): 200 and the handler ran; an Origin check that
    compares host names only (not ports) let `http://localhost:<other port>` through. Both failed it."""
    port = server.port
    headers = {"Host": f"localhost:{port}", "Origin": origin.format(port=port, other=port + 1), **JSON}
    code, _, body = http(server, method, path, headers=headers)
    assert code == 403, body
    assert body["error"] == "CrossOrigin" and "other web pages" in body["message"]
    assert invoker.events == []


def test_the_own_origin_is_answered(server, invoker):
    """What the console's page sends: its own origin, JSON."""
    headers = {"Host": f"localhost:{server.port}", "Origin": f"http://localhost:{server.port}", **JSON}
    code, _, _ = http(server, "POST", "/api/upgrades/1/continue", headers=headers)
    assert code == 200 and len(invoker.events) == 1


WRITES = [r for r in ROUTES if r.method not in ("GET", "HEAD")]


@pytest.mark.parametrize("route", WRITES, ids=[f"{r.method} {r.resource}" for r in WRITES])
@pytest.mark.parametrize(("content_type", "body"), [(None, None), (None, b'{"a": 1}'), ("text/plain", b'{"a": 1}'),
                                                    ("application/x-www-form-urlencoded", b"a=1"),
                                                    ("multipart/form-data; boundary=x", None)])  # fmt: skip
def test_every_write_without_json_content_type_is_refused(server, invoker, route, content_type, body):
    """What a web page can send anywhere without a preflight: no Content-Type (a bodiless POST, a Blob body),
    text/plain, a form; sent as a browser sends it (its own `Origin` and `Sec-Fetch-*` headers). Breakage
    tried: no Content-Type rule in `_dispatch` (main): every case reached the handler; the rule applied only
    to requests with a body (Content-Length > 0) let every bodiless write through; the bare-write exception
    ignoring the browser's headers let the bodiless case through. Each failed this test."""
    path = re.sub(r"\{\w+\}", "x1", route.resource)
    headers = {"Origin": f"http://localhost:{server.port}", "Host": f"localhost:{server.port}",
               "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors"}  # fmt: skip
    if content_type:
        headers["Content-Type"] = content_type
    code, _, answer = http(server, route.method, path, body, headers)
    assert code == 415, answer
    assert answer["error"] == "JsonContentTypeRequired"
    assert "send the header 'Content-Type: application/json'" in answer["message"]
    assert "-H 'Content-Type: application/json'" in answer["message"]  # exactly what to add to curl
    assert invoker.events == []


@pytest.mark.parametrize("route", WRITES, ids=[f"{r.method} {r.resource}" for r in WRITES])
def test_every_write_with_json_content_type_is_answered(server, invoker, route):
    path = re.sub(r"\{\w+\}", "x1", route.resource)
    code, _, _ = http(server, route.method, path, None, {"Content-Type": "application/json; charset=utf-8"})
    assert code == 200 and len(invoker.events) == 1


def test_reads_need_no_content_type(server, invoker):
    code, _, _ = http(server, "GET", "/api/upgrades")
    assert code == 200 and len(invoker.events) == 1


def test_curls_bare_bodiless_post_is_answered(server, invoker):
    """The specification's `curl -X POST .../continue`, byte for byte as curl sends it: no body, no
    Content-Type, none of a browser's headers. No web page can send that (a browser adds `Origin` to every
    write), so the spec's command works as written. Breakage tried: the strict rule (no exception): 415."""
    head = (f"POST /api/upgrades/123/continue HTTP/1.1\r\nHost: localhost:{server.port}\r\n"
            "User-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    code, _ = raw_request(server, head)
    assert code == 200 and len(invoker.events) == 1


@pytest.mark.parametrize("browser_header", ["Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode"])
def test_a_bodiless_write_with_any_browser_header_gets_a_415_saying_what_to_add(server, invoker, browser_header):
    """The same bare POST with any one header a browser adds is refused, naming the header to send.
    Breakage tried: checking only `Origin` let the `Sec-Fetch-*` cases through."""
    value = {"Origin": f"http://localhost:{server.port}", "Sec-Fetch-Site": "same-origin",
             "Sec-Fetch-Mode": "no-cors"}[browser_header]  # fmt: skip
    head = (f"POST /api/upgrades/123/continue HTTP/1.1\r\nHost: localhost:{server.port}\r\n"
            f"{browser_header}: {value}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    code, body = raw_request(server, head)
    assert code == 415
    assert body["message"] == (
        "POST without a Content-Type is refused: send the header 'Content-Type: application/json' with every "
        "POST, PATCH and DELETE, with a body or without (curl: -H 'Content-Type: application/json'); it keeps "
        "other web pages from sending them"
    )
    assert invoker.events == []


def test_a_content_length_that_is_not_a_number_is_a_400(server, invoker):
    """Breakage tried: `int(Content-Length)` as main had it: the worker raised ValueError, no answer."""
    head = (f"POST /api/upgrades/1/continue HTTP/1.0\r\nHost: localhost:{server.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 12x\r\n\r\n").encode()  # fmt: skip
    code, body = raw_request(server, head)
    assert (code, body) == (400, {"message": "Content-Length is not a number"})
    assert invoker.events == []
