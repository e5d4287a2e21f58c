"""The web console in a real browser: Debian's chromium driven by Playwright, against the local stack.

Chromium comes from Debian (`apt-get install -y chromium`; `.ci/run` installs it), never from a
browser download: Playwright launches it by its path. Under CI a missing chromium or Playwright fails
these tests; elsewhere they skip, naming the install command. Screenshots go to artifacts/console/.
"""

from __future__ import annotations

import http.server
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.local.conftest import ROOT, StackProcess, port_is_free, stack_env
from tests.support.database import temporary_database
from tests.support.tools import require_module, require_tool

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts" / "console"
FAILING = "cust_abc142"
REBOUND_NAME = "rebind.test"
HEALTHY = [f"cust_abc{n}" for n in range(123, 142)]


@pytest.fixture(scope="package")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """A local stack of 20 demo customers (cust_abc123..cust_abc142) with quick helm Jobs; every helm Job of
    cust_abc142 fails."""
    with temporary_database(prefix="upgrades_console") as url:
        stack = StackProcess(
            ["--customers", "20", "--job-seconds", "0.2", "--poll-seconds", "0", "--fail-customer", FAILING],
            stack_env(DATABASE_URL=url),
            tmp_path_factory.mktemp("console-stack"),
        )
        yield stack
        assert stack.stop(signal.SIGINT) == 0, stack.output
        assert port_is_free(stack.port)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = require_tool("chromium", CHROMIUM)
    require_module("playwright", "make setup (pip install -r requirements-dev.txt -c constraints.txt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root (CI too), where chromium's sandbox refuses to start.
        # rebind.test resolves to 127.0.0.1: what DNS rebinding does to an attacker's name (test_cross_site.py)
        args = ["--no-sandbox", f"--host-resolver-rules=MAP {REBOUND_NAME} 127.0.0.1"]
        launched = playwright.chromium.launch(executable_path=executable, args=args)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its console errors fail the test; a screenshot of its last state is kept."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # a JS error fails the test; an HTTP error answer the page shows (a 409, a viewer's 403) does not
    opened.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield opened
    screenshot(opened, f"{request.node.name}-end")
    context.close()
    assert not errors, f"the page reported errors: {errors}"


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class OtherSite:
    """Another web site for the browser (an attacker's page): a server on 127.0.0.1 answering every GET with
    one page whose script the test writes. Reached as http://127.0.0.1:<port> it is another site than
    http://localhost:<any port>; reached as http://localhost:<port> it is the same site on another port.
    The script runs as an async function; `window.done` is set when it has finished."""

    def __init__(self) -> None:
        self.script = ""
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                data = page_with_script(outer.script)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def page_with_script(script: str) -> bytes:
    return (
        "<!doctype html><title>another site</title><script>window.done = false; window.results = [];"
        f"(async () => {{ try {{ {script} }} finally {{ window.done = true; }} }})();</script>"
    ).encode()


@pytest.fixture
def other_site() -> Iterator[OtherSite]:
    site = OtherSite()
    yield site
    site.stop()


def run_other_page(page: Any, url: str, script: str, site: OtherSite | None = None) -> list[tuple[str, str, int]]:
    """Open another site's page running `script`; every response the browser got: (method, URL, status)."""
    seen: list[tuple[str, str, int]] = []
    page.on("response", lambda r: seen.append((r.request.method, r.url, r.status)))
    if site is not None:
        site.script = script
    page.goto(url)
    page.wait_for_function("window.done === true")
    return seen
