"""The web console in a real browser: Debian's chromium driven by Playwright, against the local stack.

Chromium comes from Debian (`apt-get install -y chromium`; `.ci/run` installs it), never from a
browser download: Playwright launches it by its path. Under CI a missing chromium or Playwright fails
these tests; elsewhere they skip, naming the install command. Screenshots go to artifacts/console/.
"""

from __future__ import annotations

import signal
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
        # --no-sandbox: the tests run as root (CI too), where chromium's sandbox refuses to start
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
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
