"""`upgrade-customers console`: the console for the API in AWS, every request signed with SigV4.

Between the console and the local stack stands a stand-in for API Gateway (sigv4_gateway.py) with
known credentials: it recomputes each signature with botocore and applies the viewer/operator policies.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
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

from tests.console.conftest import OtherSite, run_other_page, screenshot
from tests.console.sigv4_gateway import OPERATOR, REGION, VIEWER, Gateway, GatewayServer
from tests.console.test_console_browser import deploy_canary, expect
from tests.local.conftest import ROOT, StackProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(console_stack: StackProcess) -> Iterator[GatewayServer]:
    server = GatewayServer(Gateway(upstream=f"http://127.0.0.1:{console_stack.port}")).start()
    yield server
    server.stop()


# The README's command for the stack in AWS, which every console of this module runs: the installed
# `upgrade-customers` (the environment's bin first on PATH, as an activated .venv has it), `https://…` the gateway.
CONSOLE = "upgrade-customers console --api-url https://…"


class ConsoleProcess:
    """`upgrade-customers console --api-url … --port 0` as an operator runs it, with given credentials.

    `wrapper` runs it under another command (e.g. a shell that ignores SIGINT, as a script's background
    job does)."""

    def __init__(self, api_url: str, keys: tuple[str, str], logs: Path, *extra: str, wrapper: tuple[str, ...] = (),
                 environment: dict[str, str] | None = None, command: str = CONSOLE) -> None:  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "UPGRADE_API_URL"}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(environment or {})
        env.update(
            AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1], AWS_REGION=REGION,
            AWS_CONFIG_FILE=str(logs / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(logs / "no-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
        )  # fmt: skip
        self.stdout = logs / f"console-{keys[0]}.out"
        self.process = subprocess.Popen(
            [*wrapper, *shlex.split(command.replace("https://…", api_url)), "--port", "0", *extra],
            cwd=ROOT, env=env, stdout=self.stdout.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        link = r"Console: (http://localhost:(\d+))(/admin/queues\?token=[A-Za-z0-9_-]{40,})\n"
        while not (found := re.search(link, self.stdout.read_text())):
            assert self.process.poll() is None, self.stdout.read_text()
            assert time.monotonic() < deadline, self.stdout.read_text()
            time.sleep(0.1)
        self.url, self.port, self.sign_in_path = found.group(1), int(found.group(2)), found.group(3)
        self.cookie: tuple[str, str] | None = None

    def sign_in(self) -> None:
        """What the operator's browser does with the printed link: exchange it for the session cookie."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", self.sign_in_path, headers={"Host": f"localhost:{self.port}"})
        response = conn.getresponse()
        assert response.status == 303, response.read()
        name, _, value = response.headers["Set-Cookie"].split(";", 1)[0].partition("=")
        conn.close()
        self.cookie = (name, value)

    def browser_cookie(self) -> dict[str, str]:
        """The session cookie for a Playwright context, as the browser that used the link holds it."""
        assert self.cookie is not None, "sign_in() first"
        return {"name": self.cookie[0], "value": self.cookie[1], "url": self.url}

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                signed_in: bool = True) -> tuple[int, Any]:  # fmt: skip
        send = {"Host": f"localhost:{self.port}", **(headers or {})}
        if signed_in and self.cookie:
            send.setdefault("Cookie", "=".join(self.cookie))
        data = json.dumps(body).encode() if body is not None else None
        if data or method not in ("GET", "HEAD"):
            send.setdefault("Content-Type", "application/json")
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

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"the console did not stop on {signal.Signals(sig).name}") from None


@pytest.fixture(scope="module")
def operator_console(gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(gateway.url, OPERATOR, tmp_path_factory.mktemp("console-operator"))
    console.sign_in()
    yield console
    assert console.stop() == 0, console.stdout.read_text()
    assert "Console stopped." in console.stdout.read_text()


@pytest.fixture(scope="module")
def viewer_console(gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    console = ConsoleProcess(gateway.url, VIEWER, tmp_path_factory.mktemp("console-viewer"))
    console.sign_in()
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
    assert config["identity"] == f"AWS access key {OPERATOR[0]}" and "token" not in config
    seen = gateway.gateway.seen
    before = len(seen)

    code, fleet = operator_console.request("GET", "/api/fleet")
    assert code == 200 and fleet == console_stack.get("/api/fleet")
    code, page = operator_console.request("GET", "/api/upgrades?limit=5&component=api")
    assert code == 200 and "upgrades" in page
    plan = {"component": "api", "version": "v9.9.9", "strategy": "canary", "canaryPercent": 50}
    code, planned = operator_console.request("POST", "/api/upgrades/plan", body=plan)
    assert code == 200 and planned["total"] > 0
    code, refused = operator_console.request("POST", "/api/upgrades/plan", body={"strategy": "all"})
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
    port = operator_console.port
    continue_ = "/api/upgrades/1/continue"
    assert operator_console.request("POST", continue_, signed_in=False)[0] == 401  # not the signed-in browser
    guessed = {"Cookie": f"upgrade-console-{port}=guess"}
    assert operator_console.request("POST", continue_, headers=guessed, signed_in=False)[0] == 401
    for origin in ("https://evil.example", f"http://localhost:{port + 1}"):  # another site; another port
        assert operator_console.request("POST", continue_, headers={"Origin": origin})[0] == 403
    assert operator_console.request("GET", "/api/fleet", headers={"Sec-Fetch-Site": "same-site"})[0] == 403
    for host in ("evil.example:80", f"localhost:{port + 1}"):  # DNS rebinding; the same name, another port
        code, _ = operator_console.request("GET", "/console/config.json", headers={"Host": host})
        assert code == 421
    assert len(gateway.gateway.seen) == before, "nothing reached the API"


def test_the_readmes_console_command_signs_every_request_with_the_operators_keys(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    """The README's `upgrade-customers console --api-url https://…` as written, the gateway's URL for `https://…`
    (tests/docs/test_readme_commands.py). Breakage tried: `--api-url` → `--url` in CONSOLE: the console exited with
    argparse's usage error and this test failed."""
    console = ConsoleProcess(gateway.url, OPERATOR, tmp_path, command=CONSOLE)
    try:
        before = len(gateway.gateway.seen)
        console.sign_in()
        assert console.request("GET", "/api/fleet")[0] == 200
        assert [seen.access_key for seen in gateway.gateway.seen[before:]] == [OPERATOR[0]]
    finally:
        assert console.stop() == 0


def test_a_second_local_process_cannot_make_it_sign(gateway: GatewayServer, tmp_path: Path) -> None:
    """Issue 29 item 1. Another local process tries everything it can without the operator's terminal
    (tests/console/second_process.py): config.json, every page, the command lines of every process, a
    guessed link, then a signed plan and fleet with whatever it got; once before the operator signs in
    and once after, then the used link itself. Before the fix (main): config.json handed it the token
    and its POST /api/upgrades/plan reached the API signed with the operator's key; this test failed.
    Breakage tried: the cookie check skipped for config.json (`_session_refusal` only for /api/*):
    config.json answered the second process 200; this test failed."""
    console = ConsoleProcess(gateway.url, OPERATOR, tmp_path)
    try:
        before = len(gateway.gateway.seen)
        tried = second_process(console.port)
        assert tried == {
            "config": 401, "token_found": False, "keys_in_command_lines": 0, "cookies_found": 0,
            "plan": 401, "fleet": 401, "fleet_head": 401,
        }  # fmt: skip
        assert len(gateway.gateway.seen) == before, gateway.gateway.seen[before:]

        console.sign_in()  # the operator's browser; the console now signs for it
        assert console.request("GET", "/api/fleet")[0] == 200
        signed = len(gateway.gateway.seen)
        assert signed == before + 1 and gateway.gateway.seen[-1].access_key == OPERATOR[0]
        assert second_process(console.port) == tried  # and still for nobody else
        replayed = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{console.url}{console.sign_in_path}"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert replayed.stdout == "403"  # the link works once: seen later (a scrollback, a log), it is spent
        assert len(gateway.gateway.seen) == signed
    finally:
        assert console.stop() == 0


def second_process(port: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.console.second_process", str(port)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def test_a_viewer_gets_a_read_only_console(
    viewer_console: ConsoleProcess, operator_console: ConsoleProcess, console_stack: StackProcess,
    gateway: GatewayServer, page: Any,
) -> None:  # fmt: skip
    config = viewer_console.config()
    assert config["readOnly"] is True  # found by the probe: the viewer policy refuses POST /plan
    upgrade_id = deploy_canary(console_stack, "api", "v1.4.0")
    # the browser that used each console's link (one cookie per port: both live in one browser)
    page.context.add_cookies([viewer_console.browser_cookie(), operator_console.browser_cookie()])

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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_it_even_from_a_scripts_background_job(tmp_path: Path, sig: int) -> None:
    """Issue 29 item 9: a background job of a non-interactive shell (or nohup) inherits SIGINT as ignored,
    which turns off Python's KeyboardInterrupt. Here the console runs under `trap "" INT; exec …`, so
    SIGINT is ignored when it starts. Before the fix (main): SIGINT did nothing (the wait timed out) and
    SIGTERM killed it without "Console stopped." (exit -15). Breakage tried: `_stop_on_signals` not
    installing the handlers: both cases failed."""
    ignoring = ("bash", "-c", 'trap "" INT; exec "$@"', "bash")
    console = ConsoleProcess("http://127.0.0.1:9/v1", OPERATOR, tmp_path, wrapper=ignoring)
    assert console.stop(sig) == 0
    assert console.stdout.read_text().endswith("Console stopped.\n")


def test_the_link_signs_the_browser_in_once_and_the_console_works(
    gateway: GatewayServer, console_stack: StackProcess, browser: Any, page: Any, tmp_path: Path
) -> None:
    """A fresh console in Chromium: the printed link signs the browser in (an HttpOnly, SameSite=Strict
    cookie, the key gone from the address bar) and the console reads the API through the proxy; the
    same link in another browser profile is spent, and the console there says how to sign in."""
    console = ConsoleProcess(gateway.url, OPERATOR, tmp_path)
    try:
        page.goto(f"{console.url}{console.sign_in_path}")
        expect()(page).to_have_url(f"{console.url}/admin/queues")
        expect()(page.locator("#mode")).to_contain_text("AWS")
        expect()(page.locator("#identity")).to_contain_text(OPERATOR[0])
        expect()(page.locator("#upgrade-list li").first).to_be_visible()
        cookies = page.context.cookies(console.url)
        assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
            (f"upgrade-console-{console.port}", True, "Strict")
        ]
        assert page.evaluate("document.cookie") == ""  # no script of the page can read it
        assert any(s.path.startswith("/v1/api/upgrades") and s.verdict == "ok" for s in gateway.gateway.seen)

        other = browser.new_context()  # another profile (or anyone who finds the link later)
        try:
            elsewhere = other.new_page()
            answer = elsewhere.goto(f"{console.url}{console.sign_in_path}")
            assert answer is not None and answer.status == 403
            assert "already used" in elsewhere.content()
            elsewhere.goto(f"{console.url}/admin/queues")
            expect()(elsewhere.locator("#notice")).to_contain_text("Not signed in")
            assert other.cookies(console.url) == []
        finally:
            other.close()
    finally:
        assert console.stop() == 0


@pytest.mark.parametrize("other_host", ["localhost", "127.0.0.1"], ids=["another port", "another site"])
def test_a_page_on_another_port_cannot_make_the_console_sign(
    operator_console: ConsoleProcess, gateway: GatewayServer, page: Any, other_site: OtherSite, other_host: str
) -> None:
    """Issue 27's class "the console proxy": the same host on another port is another origin. In the browser
    that signed in, a page at http://localhost:<other port> is same-site with the console, so the
    SameSite=Strict cookie goes with its no-cors requests; Sec-Fetch-Site (same-site) refuses them all,
    and the POST also fails the Origin and JSON rules. From another site the cookie stays home. Breakage
    tried: the Sec-Fetch-Site check removed: the GET and HEAD were answered 200, signed (so the cookie
    did go with them), and from another site they got 401; this test failed. With the Origin also
    compared by host name only, the POST was still refused by the JSON rule (415): each of the three
    rules holds it alone (test_console_requests.py breaks them one by one)."""
    page.context.add_cookies([operator_console.browser_cookie()])
    before = len(gateway.gateway.seen)
    target = operator_console.url
    script = f"""
        await fetch("{target}/api/upgrades/1/continue", {{method: "POST", mode: "no-cors", credentials: "include",
                                                          headers: {{"Content-Type": "text/plain"}}}});
        await fetch("{target}/api/fleet", {{mode: "no-cors", credentials: "include"}});
        await fetch("{target}/api/upgrades", {{method: "HEAD", mode: "no-cors", credentials: "include"}});
        await fetch("{target}/console/config.json", {{mode: "no-cors", credentials: "include"}});
    """
    seen = run_other_page(page, f"http://{other_host}:{other_site.port}/", script, other_site)

    answered = [(method, url.removeprefix(target), status) for method, url, status in seen if url.startswith(target)]
    assert answered == [("POST", "/api/upgrades/1/continue", 403), ("GET", "/api/fleet", 403),
                        ("HEAD", "/api/upgrades", 403), ("GET", "/console/config.json", 403)]  # fmt: skip
    assert len(gateway.gateway.seen) == before, "nothing reached the API"


def test_open_hands_the_browser_a_private_page_not_the_key(tmp_path: Path) -> None:
    """`--open` must not put the key on the browser's command line, which every local user can read in
    /proc. The "browser" here records its arguments and what it finds at the address it was given.
    Breakage tried: `webbrowser.open(url)` with the sign-in link itself: the key was in the recorded
    argv; this test failed."""
    browser = tmp_path / "browser"
    browser.write_text(
        '#!/bin/sh\nprintf %s "$*" > "$0.argv"\npage="${1#file://}"\n'
        'stat -c %a "$page" > "$0.mode"\ncat "$page" > "$0.page"\ntouch "$0.done"\n'
    )
    browser.chmod(0o700)
    console = ConsoleProcess(
        "http://127.0.0.1:9/v1", OPERATOR, tmp_path, "--open", environment={"BROWSER": str(browser)}
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "browser.done").exists():
            assert time.monotonic() < deadline, "the browser was not started"
            time.sleep(0.1)
        argv = (tmp_path / "browser.argv").read_text()
        key = console.sign_in_path.split("token=", 1)[1]
        assert argv.startswith("file:///") and key not in argv
        assert (tmp_path / "browser.mode").read_text().strip() == "600"  # only this user can read it
        assert f"{console.url}{console.sign_in_path}" in (tmp_path / "browser.page").read_text()
        opened = Path(argv.removeprefix("file://"))
    finally:
        assert console.stop() == 0
    assert not opened.exists()  # removed when the console stops


def test_a_stop_while_the_browser_is_being_opened_ends_cleanly(tmp_path: Path) -> None:
    """webbrowser waits for a BROWSER command to exit; a Ctrl-C or SIGTERM in that moment stops the console
    cleanly (exit 0) like any other. Breakage tried: `webbrowser.open` outside the `try` that catches the
    stop (as it was): the stop escaped and the console exited 1 (seen once in CI), caught here."""
    browser = tmp_path / "browser"
    browser.write_text('#!/bin/sh\ntouch "$0.started"\nsleep 5\n')
    browser.chmod(0o700)
    console = ConsoleProcess(
        "http://127.0.0.1:9/v1", OPERATOR, tmp_path, "--open", environment={"BROWSER": str(browser)}
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "browser.started").exists():
        assert time.monotonic() < deadline, "the browser was not started"
        time.sleep(0.1)
    assert console.stop() == 0
