"""Other web pages against the local stack, in headless Chromium: what a page the operator merely visits
can make the stack do (issue 29 item 2). The stack acts as `local:<you>`, and with `--kubeconfig` on a
real cluster, so a request it answers from another page is a rollout nobody asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.console.conftest import HEALTHY, REBOUND_NAME, OtherSite, run_other_page
from tests.console.test_console_browser import deploy_canary
from tests.local.conftest import StackProcess

pytestmark = pytest.mark.slow

ROGUE_DEPLOY = {"component": "exporter", "version": "v6.6.6", "strategy": "all", "customerIds": HEALTHY}


@pytest.fixture
def canary(console_stack: StackProcess) -> Iterator[Callable[[str, str], str]]:
    """Start a canary that waits at its gate; abort it afterwards (one active upgrade per component)."""
    started: list[str] = []

    def start(component: str, version: str) -> str:
        started.append(deploy_canary(console_stack, component, version))
        return started[-1]

    yield start
    for upgrade_id in started:
        console_stack.request("POST", f"/api/upgrades/{upgrade_id}/abort", {"reason": "test done"})


def rogue_upgrades(stack: StackProcess) -> list[dict[str, Any]]:
    return [u for u in stack.get("/api/upgrades?limit=100")["upgrades"] if u["version"] == ROGUE_DEPLOY["version"]]


@pytest.mark.parametrize("other_host", ["127.0.0.1", "localhost"], ids=["another site", "another port"])
def test_a_page_on_another_origin_cannot_continue_or_deploy(
    page: Any, console_stack: StackProcess, other_site: OtherSite, other_host: str, canary: Any
) -> None:
    """The CSRF of the security review, reproduced: `fetch(…, {method: "POST", mode: "no-cors"})` needs no
    CORS permission; a bodiless POST passed the canary gate, and a Blob body (sent without
    Content-Type) was parsed as JSON and deployed. Breakage tried: main's server.py and api.py put
    back: the page's requests were answered (200, 202), the canary continued and the rogue upgrade
    started; this test failed."""
    upgrade_id = canary("api", "v1.5.0")
    stack = f"http://localhost:{console_stack.port}"
    script = f"""
        await fetch("{stack}/api/upgrades/{upgrade_id}/continue", {{method: "POST", mode: "no-cors"}});
        await fetch("{stack}/api/upgrades/deploy", {{method: "POST", mode: "no-cors",
                                                    body: new Blob([{json.dumps(json.dumps(ROGUE_DEPLOY))}])}});
    """
    seen = run_other_page(page, f"http://{other_host}:{other_site.port}/", script, other_site)

    answered = [(method, status) for method, url, status in seen if url.startswith(stack)]
    assert answered == [("POST", 403), ("POST", 403)]  # both reached the stack, both refused (another Origin)
    assert console_stack.get(f"/api/upgrades/{upgrade_id}/status")["status"] == "awaiting_continue"
    assert rogue_upgrades(console_stack) == []


def test_a_dns_rebinding_page_cannot_continue_or_read(page: Any, console_stack: StackProcess, canary: Any) -> None:
    """DNS rebinding: the attacker's page came from rebind.test:<port>, whose name now resolves to 127.0.0.1
    (the browser's resolver rule), so the browser holds the stack for the page's own origin: the page
    may send JSON and read the answers. Only the Host (rebind.test) tells.

    The attacker's script runs in a document of that origin loaded from 127.0.0.1 (whatever the stack
    answered for it), injected by the test: a document served from the attacker's own public address
    would be stopped by Chromium's Private Network Access, which Firefox and Safari do not have.
    Breakage tried: main's server.py put back: the continue was answered 200 and the list of upgrades
    read (200); this test failed."""
    upgrade_id = canary("dashboard", "v2.5.0")
    seen: list[tuple[str, int]] = []
    page.on("response", lambda r: seen.append((r.request.method, r.status)) if "/api/" in r.url else None)
    page.goto(f"http://{REBOUND_NAME}:{console_stack.port}/rebound.html")
    results = page.evaluate(f"""async () => {{
        const sent = await fetch("/api/upgrades/{upgrade_id}/continue",
                                 {{method: "POST", headers: {{"Content-Type": "application/json"}}}});
        const read = await fetch("/api/upgrades");
        return [[sent.status, await sent.text()], [read.status, await read.text()]];
    }}""")

    assert [status for status, _ in results] == [421, 421], results
    assert all(json.loads(text)["error"] == "MisdirectedRequest" for _, text in results)
    assert "upgrades" not in json.loads(results[1][1])  # nothing was read
    assert seen == [("POST", 421), ("GET", 421)]
    assert console_stack.get(f"/api/upgrades/{upgrade_id}/status")["status"] == "awaiting_continue"
