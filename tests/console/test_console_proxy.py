"""`upgrade-customers console`: the console for the API in AWS, every request signed with SigV4.

Between the console and the local stack stands a stand-in for API Gateway (sigv4_gateway.py) with
known credentials: it recomputes each signature with botocore and applies the viewer/operator policies.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.console.conftest import screenshot
from tests.console.sigv4_gateway import OPERATOR, REGION, VIEWER, Gateway, GatewayServer
from tests.console.test_console_browser import deploy_canary, expect
from tests.local.conftest import ROOT, StackProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(console_stack: StackProcess) -> Iterator[GatewayServer]:
    server = GatewayServer(Gateway(upstream=f"http://127.0.0.1:{console_stack.port}")).start()
    yield server
    server.stop()


class ConsoleProcess:
    """`upgrade-customers console --api-url … --port 0` as an operator runs it, with given credentials."""

    def __init__(self, api_url: str, keys: tuple[str, str], logs: Path, *extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "UPGRADE_API_URL"}
        env.update(
            AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1], AWS_REGION=REGION,
            AWS_CONFIG_FILE=str(logs / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(logs / "no-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
        )  # fmt: skip
        self.stdout = logs / f"console-{keys[0]}.out"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "upgradectl.cli", "console", "--api-url", api_url, "--port", "0", *extra],
            cwd=ROOT, env=env, stdout=self.stdout.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (found := re.search(r"Console: (http://localhost:(\d+))/admin/queues", self.stdout.read_text())):
            assert self.process.poll() is None, self.stdout.read_text()
            assert time.monotonic() < deadline, self.stdout.read_text()
            time.sleep(0.1)
        self.url, self.port = found.group(1), int(found.group(2))

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                token: str | None = None) -> tuple[int, Any]:  # fmt: skip
        send = {"Host": f"localhost:{self.port}", **(headers or {})}
        if token:
            send["X-Console-Token"] = token
        data = json.dumps(body).encode() if body is not None else None
        if data:
            send["Content-Type"] = "application/json"
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=send)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def config(self) -> dict[str, Any]:
        code, config = self.request("GET", "/console/config.json")
        assert code == 200, config
        return dict(config)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def operator_console(gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(gateway.url, OPERATOR, tmp_path_factory.mktemp("console-operator"))
    yield console
    assert console.stop() == 0, console.stdout.read_text()
    assert "Console stopped." in console.stdout.read_text()


@pytest.fixture(scope="module")
def viewer_console(gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(gateway.url, VIEWER, tmp_path_factory.mktemp("console-viewer"))
    yield console
    assert console.stop() == 0, console.stdout.read_text()


def signed(method: str, url: str, body: bytes, keys: tuple[str, str]) -> urllib.request.Request:
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(*keys), "execute-api", REGION).add_auth(request)
    return urllib.request.Request(url, data=body or None, method=method, headers=dict(request.headers.items()))


def send(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_gateway_recomputes_signatures(gateway: GatewayServer) -> None:
    """The verifier itself can fail: a wrong secret, a changed body, an unsigned request are refused."""
    url = gateway.url + "/api/upgrades/plan"
    body = json.dumps({"component": "api", "version": "v9.9.9", "strategy": "all"}).encode()
    assert send(signed("POST", url, body, OPERATOR)) == 200
    assert send(signed("POST", url, body, (OPERATOR[0], "not-the-secret"))) == 403
    tampered = signed("POST", url, body, OPERATOR)
    tampered.data = body.replace(b"v9.9.9", b"v9.9.8")
    assert send(tampered) == 403
    assert send(urllib.request.Request(gateway.url + "/api/fleet")) == 403
    assert send(signed("POST", url, body, VIEWER)) == 403  # the viewer policy: GET routes only
    verdicts = [seen.verdict for seen in gateway.gateway.seen[-5:]]
    assert verdicts[0] == "ok" and verdicts[1:3] == ["signature mismatch"] * 2
    assert verdicts[3].startswith("missing") and verdicts[4].startswith("viewer policy")


def test_every_proxied_request_is_signed_with_the_operators_credentials(
    operator_console: ConsoleProcess, gateway: GatewayServer, console_stack: StackProcess
) -> None:
    config = operator_console.config()
    assert config["mode"] == "aws" and config["readOnly"] is False
    assert config["identity"] == f"AWS access key {OPERATOR[0]}" and config["token"]
    seen = gateway.gateway.seen
    before = len(seen)

    code, fleet = operator_console.request("GET", "/api/fleet", token=config["token"])
    assert code == 200 and fleet == console_stack.get("/api/fleet")
    code, page = operator_console.request("GET", "/api/upgrades?limit=5&component=api", token=config["token"])
    assert code == 200 and "upgrades" in page
    plan = {"component": "api", "version": "v9.9.9", "strategy": "canary", "canaryPercent": 50}
    code, planned = operator_console.request("POST", "/api/upgrades/plan", body=plan, token=config["token"])
    assert code == 200 and planned["total"] > 0
    code, refused = operator_console.request(
        "POST", "/api/upgrades/plan", body={"strategy": "all"}, token=config["token"]
    )
    assert code == 422 and refused["errors"]  # the API's own answer comes back as it is

    proxied = seen[before:]
    assert [(s.method, s.path) for s in proxied] == [
        ("GET", "/v1/api/fleet"),
        ("GET", "/v1/api/upgrades?limit=5&component=api"),
        ("POST", "/v1/api/upgrades/plan"),
        ("POST", "/v1/api/upgrades/plan"),
    ]
    assert all(s.verdict == "ok" and s.access_key == OPERATOR[0] for s in proxied), proxied


def test_no_request_is_signed_for_another_page_or_host(
    operator_console: ConsoleProcess, gateway: GatewayServer
) -> None:
    before = len(gateway.gateway.seen)
    token = operator_console.config()["token"]
    assert operator_console.request("POST", "/api/upgrades/1/continue")[0] == 403  # no token: not our page
    assert operator_console.request("POST", "/api/upgrades/1/continue", token="guess")[0] == 403
    code, _ = operator_console.request(
        "POST", "/api/upgrades/1/continue", token=token, headers={"Origin": "https://evil.example"}
    )
    assert code == 403
    code, _ = operator_console.request("GET", "/console/config.json", headers={"Host": "evil.example:80"})
    assert code == 421  # DNS rebinding: another name for this address gets nothing, not even the token
    assert len(gateway.gateway.seen) == before, "nothing reached the API"


def test_a_viewer_gets_a_read_only_console(
    viewer_console: ConsoleProcess, operator_console: ConsoleProcess, console_stack: StackProcess,
    gateway: GatewayServer, page: Any,
) -> None:  # fmt: skip
    config = viewer_console.config()
    assert config["readOnly"] is True  # found by the probe: the viewer policy refuses POST /plan
    upgrade_id = deploy_canary(console_stack, "api", "v1.4.0")

    page.goto(f"{viewer_console.url}/admin/queues?interval=300#/upgrades/{upgrade_id}")
    expect()(page.locator("#gate")).to_contain_text("Canary gate")
    expect()(page.locator("#mode")).to_contain_text("read-only")
    expect()(page.locator("#customers tbody tr[data-customer]").first).to_be_visible()
    assert page.locator("[data-action]").count() == 0
    assert page.get_by_role("button", name=re.compile("Continue|Abort|Roll back|Resume")).count() == 0
    screenshot(page, "viewer-read-only")

    # the operator's console, same upgrade: the gate's button works through the signed proxy
    page.goto(f"{operator_console.url}/admin/queues?interval=300#/upgrades/{upgrade_id}")
    expect()(page.locator("#mode")).not_to_contain_text("read-only")
    page.get_by_role("button", name="Continue rollout").click()
    page.locator("#confirm-ok").click()
    expect()(page.locator("#detail-summary .detail-head .status")).to_have_text("completed")
    continued = [s for s in gateway.gateway.seen if s.path == f"/v1/api/upgrades/{upgrade_id}/continue"]
    assert [(s.verdict, s.access_key) for s in continued] == [("ok", OPERATOR[0])]
    status = console_stack.get(f"/api/upgrades/{upgrade_id}/status")
    assert status["continuedBy"].startswith("local:")  # the stack behind the stand-in: its own identity


def test_the_console_needs_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", AWS_REGION=REGION)  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "upgradectl.cli", "console", "--api-url", "https://abc.execute-api.us-east-1.amazonaws.com/v1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no AWS credentials found" in done.stderr
