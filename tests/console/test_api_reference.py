"""The interactive API reference at /docs (issue 25, item 3): Swagger UI from a PyPI package, over the
document the code generates, served by the local stack; "Try it out" calls this origin and nothing else."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest

from tests.console.conftest import ROOT, screenshot
from tests.console.test_console_browser import expect
from tests.local.conftest import StackProcess

pytestmark = pytest.mark.slow


def fetch(stack: StackProcess, path: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}{path}", timeout=30) as response:
        return dict(response.headers.items()), response.read()


def test_the_reference_page_and_its_document_are_served_by_the_stack(console_stack: StackProcess) -> None:
    """The page loads nothing from elsewhere, under the console's Content-Security-Policy; the document is the
    committed docs/openapi.json with this origin as its only server. Breakage tried: `document()` kept the
    document's servers (the AWS URL and localhost:3100 stayed in it)."""
    assert f"  API reference: {console_stack.url}/docs" in console_stack.stdout_path.read_text()
    headers, body = fetch(console_stack, "/docs")
    page = body.decode()
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "<script>" not in page and not re.search(r'(src|href)="https?:', page), "nothing from elsewhere"
    headers, body = fetch(console_stack, "/docs/openapi.json")
    served = json.loads(body)
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served["servers"] == [{"url": "/", "description": served["servers"][0]["description"]}]
    assert {**served, "servers": committed["servers"]} == committed
    for asset in ("/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/reference.js"):
        headers, body = fetch(console_stack, asset)
        assert body and headers["Content-Type"].split(";")[0] in ("text/javascript", "text/css")


def test_the_reference_renders_the_deploy_operation_and_try_it_out_lists_upgrades(
    page: Any, console_stack: StackProcess
) -> None:
    """In headless chromium, from the console's link: the deploy operation is shown; "Try it out" on GET /api/upgrades answers 200, and
    every request the page made went to the stack itself. Breakage tried: `document()` kept the document's servers
    ("Try it out" called the AWS URL, which the page's CSP blocked: a page error, and no 200)."""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{console_stack.url}/admin/queues")
    page.get_by_role("link", name="API reference").click()  # the console links to it
    page.wait_for_url(f"{console_stack.url}/docs")
    deploy = page.locator(
        "#operations-default-post_api_upgrades_deploy, .opblock-post", has_text="/api/upgrades/deploy"
    )
    expect()(deploy.first).to_be_visible()
    listing = page.locator(
        ".opblock-get", has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/upgrades$"))
    )
    listing.locator(".opblock-summary").first.click()
    listing.get_by_role("button", name="Try it out").click()
    listing.get_by_role("button", name="Execute").click()
    expect()(listing.locator(".live-responses-table .response .response-col_status").first).to_have_text("200")
    screenshot(page, "api-reference-try-it-out")
    origin = console_stack.url
    assert requests and all(url.startswith(origin + "/") or url.startswith("data:") for url in requests), requests
    assert any(url.startswith(f"{origin}/api/upgrades") for url in requests)
