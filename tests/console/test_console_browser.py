"""The console served by the local stack, in headless chromium: what an operator sees and does."""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.request
from typing import Any

import pytest

from tests.console.conftest import ARTIFACTS, FAILING, HEALTHY, ROOT, screenshot
from tests.local.conftest import StackProcess

pytestmark = pytest.mark.slow


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=60_000)  # generous: the machine is shared
    return playwright_expect


def wait_runs_ended(stack: StackProcess, upgrade_id: str, timeout: float = 120) -> None:
    """The halt is recorded before its execution ends, and a resume before that is refused ("run ... is still
    finishing the customers it had started"): a CI flake under load, the console's Resume answered 409."""
    deadline = time.monotonic() + timeout
    while any(a["status"] == "running" for a in stack.get(f"/api/upgrades/{upgrade_id}/status")["attempts"]):
        assert time.monotonic() < deadline, f"a run of upgrade {upgrade_id} never ended"
        time.sleep(0.1)


def deploy_canary(stack: StackProcess, component: str, version: str) -> str:
    code, body = stack.request(
        "POST", "/api/upgrades/deploy",
        {"component": component, "version": version, "strategy": "canary", "canaryPercent": 10, "customerIds": HEALTHY},
    )  # fmt: skip
    assert code == 202, body
    upgrade_id = str(body["upgradeId"])
    stack.wait_status(upgrade_id, {"awaiting_continue"})
    return upgrade_id


def open_upgrade(page: Any, stack: StackProcess, upgrade_id: str) -> None:
    page.goto(f"{stack.url}/admin/queues?interval=300#/upgrades/{upgrade_id}")
    expect()(page.locator("#detail-summary .detail-head h3")).to_contain_text(f"Upgrade #{upgrade_id}")


def wave_percents(page: Any) -> list[int]:
    return [int(v) for v in page.locator("#waves svg.bar").evaluate_all("els => els.map(e => e.dataset.percent)")]


def wait_for(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_the_stack_serves_the_console_at_the_specs_address(console_stack: StackProcess) -> None:
    banner = console_stack.stdout_path.read_text()
    assert f"  Console: {console_stack.url}/admin/queues" in banner
    for path in ("/admin/queues", "/"):
        with urllib.request.urlopen(f"http://127.0.0.1:{console_stack.port}{path}", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/html")
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            page = response.read().decode()
        assert '<script type="module" src="/console/console.js">' in page
        assert "http" not in re.sub(r'xmlns="[^"]+"', "", page), "the page loads nothing from elsewhere"
    assert console_stack.get("/console/config.json") == {
        "mode": "local", "identity": console_stack.get("/console/config.json")["identity"], "readOnly": False,
    }  # fmt: skip


def test_a_canary_waits_at_its_gate_and_continue_releases_it(page: Any, console_stack: StackProcess) -> None:
    upgrade_id = deploy_canary(console_stack, "api", "v1.2.0")
    open_upgrade(page, console_stack, upgrade_id)

    gate = page.locator("#gate")
    expect()(gate).to_contain_text("Canary gate")
    expect()(page.locator("#waves svg.bar").first).to_have_attribute("data-percent", "100")
    assert wave_percents(page) == [100, 0]
    screenshot(page, "canary-at-gate")

    gate.get_by_role("button", name="Continue rollout").click()
    dialog = page.locator("dialog#confirm")
    expect()(dialog).to_be_visible()
    expect()(page.locator("#confirm-cancel")).to_be_focused()  # the safe choice has the focus
    assert console_stack.get(f"/api/upgrades/{upgrade_id}/status")["status"] == "awaiting_continue"
    page.locator("#confirm-ok").click()

    expect()(page.locator("#detail-summary .detail-head .status")).to_have_text("completed")
    expect()(page.locator("#waves svg.bar").last).to_have_attribute("data-percent", "100")
    assert wave_percents(page) == [100, 100]
    status = console_stack.get(f"/api/upgrades/{upgrade_id}/status")
    assert status["status"] == "completed" and status["continuedBy"].startswith("local:")
    expect()(page.locator("#detail-summary")).to_contain_text(f"Continued by{status['continuedBy']}")
    expect()(page.locator("#activity")).to_contain_text(f"{status['continuedBy']} · Continue upgrade {upgrade_id}")
    screenshot(page, "canary-continued")


def test_abort_asks_for_confirmation_first(page: Any, console_stack: StackProcess) -> None:
    upgrade_id = deploy_canary(console_stack, "dashboard", "v2.0.0")
    open_upgrade(page, console_stack, upgrade_id)
    abort = page.get_by_role("button", name="Abort…")

    abort.click()
    expect()(page.locator("dialog#confirm")).to_be_visible()
    expect()(page.locator("#confirm-title")).to_have_text(f"Abort upgrade {upgrade_id}?")
    expect()(page.get_by_label("Also roll back every customer this upgrade changed")).not_to_be_checked()
    screenshot(page, "abort-confirmation")
    page.keyboard.press("Escape")  # cancelled: nothing is sent
    expect()(page.locator("dialog#confirm")).to_be_hidden()
    assert console_stack.get(f"/api/upgrades/{upgrade_id}/status")["status"] == "awaiting_continue"

    abort.click()
    page.get_by_label("Reason (recorded with your name)").fill("console test")
    page.locator("#confirm-ok").click()
    expect()(page.locator("#detail-summary .halt")).to_contain_text("console test")
    status = console_stack.get(f"/api/upgrades/{upgrade_id}/status")
    assert status["status"] == "aborted"
    assert "aborted by local:" in status["haltReason"] and status["haltReason"].endswith("console test")
    expect()(page.locator("#detail-summary .halt")).to_contain_text(status["haltReason"])
    expect()(page.get_by_role("button", name="Abort…")).to_have_count(0)
    expect()(page.get_by_role("button", name="Resume…")).to_be_visible()


def test_helm_output_and_error_on_demand_with_filters(page: Any, console_stack: StackProcess) -> None:
    upgrade_id = deploy_canary(console_stack, "exporter", "v1.1.0")
    open_upgrade(page, console_stack, upgrade_id)
    logs = console_stack.get(f"/api/upgrades/{upgrade_id}/logs")["logs"]
    done = [e for e in logs if e["status"] == "completed"]
    assert done and done[0]["output"]

    page.get_by_label("Status").select_option("completed")
    rows = page.locator("#customers tbody tr[data-customer]")
    expect()(rows).to_have_count(len(done))
    page.get_by_role("searchbox", name="Customer").fill(done[0]["customer_id"])
    expect()(rows).to_have_count(1)
    button = rows.first.get_by_role("button", name="Output")
    expect()(button).to_have_attribute("aria-expanded", "false")
    button.click()
    output = page.locator("#customers pre[aria-label='helm output']")
    expect()(output).to_have_text(done[0]["output"])
    expect()(rows.first.get_by_role("button", name="Hide")).to_have_attribute("aria-expanded", "true")
    page.wait_for_timeout(1000)  # a few polls later the output is still open
    expect()(output).to_be_visible()


def test_the_fleet_chart_matches_api_fleet(page: Any, console_stack: StackProcess) -> None:
    page.goto(f"{console_stack.url}/admin/queues?interval=300#/fleet")
    expect()(page.locator("figure.chart")).to_have_count(4)

    def shown() -> dict[str, dict[str, int]]:
        return page.locator("figure.chart").evaluate_all(
            """figures => Object.fromEntries(figures.map(f => [f.dataset.component, Object.fromEntries(
                 [...f.querySelectorAll('g[data-version]')].map(g => [g.dataset.version, Number(g.dataset.count)]))]))"""
        )

    def api() -> dict[str, dict[str, int]]:
        fleet = console_stack.get("/api/fleet")
        return {
            c["component"]: {
                **{v["version"]: v["customers"] for v in c["versions"]},
                **({"unknown": c["unknown"]} if c["unknown"] else {}),
            }
            for c in fleet["components"]
        }

    # a sync or an upgrade may change the fleet between two reads: wait until both agree
    wait_for(lambda: shown() == api())
    chart = api()
    assert sum(chart["api"].values()) == console_stack.get("/api/fleet")["customers"]
    # each bar's length is its share: the track is 52 % of the chart's width
    for component, versions in chart.items():
        total = sum(versions.values())
        bars = page.locator(f"figure.chart[data-component='{component}'] g[data-version] rect:not(.track)")
        widths = bars.evaluate_all("rects => rects.map(r => parseFloat(r.getAttribute('width')))")
        assert widths == pytest.approx([n * 52 / total for n in versions.values()], abs=0.01), component
    screenshot(page, "fleet")


def test_the_queue_view_shows_executions_by_state(page: Any, console_stack: StackProcess) -> None:
    upgrade_id = deploy_canary(console_stack, "mosquitto", "2.0.19")
    job_id = console_stack.get(f"/api/upgrades/{upgrade_id}/status")["jobId"]
    page.goto(f"{console_stack.url}/admin/queues?interval=300#/queue/paused")
    card = page.locator(f"article.job[data-job='{job_id}']")
    expect()(card).to_contain_text("paused")
    stats = console_stack.get("/api/queue/stats")
    assert stats["awaitingContinue"] >= 1
    expect()(page.locator("#tab-paused .n")).to_have_text(str(stats["paused"] + stats["awaitingContinue"]))
    card.get_by_text("Data").click()
    expect()(card.locator("pre")).to_contain_text('"upgradeId"')

    page.locator("#tab-paused").focus()
    page.keyboard.press("ArrowRight")  # the tabs follow the arrow keys
    expect()(page.locator("#tab-waiting")).to_be_focused()
    expect()(page.locator("#tab-waiting")).to_have_attribute("aria-selected", "true")
    page.goto(f"{console_stack.url}/admin/queues?interval=300#/queue/completed")
    expect()(page.locator("#tab-completed .n")).to_have_text(str(console_stack.get("/api/queue/stats")["completed"]))
    screenshot(page, "queue")


def test_a_failed_customer_shows_in_red_with_helms_error(page: Any, console_stack: StackProcess) -> None:
    """Also the README's screenshot: UPDATE_DOCS_SCREENSHOT=1 copies it to docs/console.png."""
    code, body = console_stack.request(
        "POST", "/api/upgrades/deploy",
        {"component": "api", "version": "v1.3.0", "strategy": "batch", "batchSize": 5, "maxConcurrency": 5,
         "failureThreshold": {"count": 1}},
    )  # fmt: skip
    assert code == 202, body
    upgrade_id = str(body["upgradeId"])
    final = console_stack.wait_status(upgrade_id, {"completed_with_failures", "halted", "failed", "completed"})
    assert final["status"] == "completed_with_failures" and final["failed"] == 1, final
    failed = console_stack.get(f"/api/upgrades/{upgrade_id}/logs?status=failed")["logs"]
    assert [e["customer_id"] for e in failed] == [FAILING] and failed[0]["error"]

    open_upgrade(page, console_stack, upgrade_id)
    expect()(page.locator("#detail-summary .detail-head .status")).to_have_text("completed with failures")
    assert wave_percents(page) == [100, 100, 100, 100]
    last_wave = page.locator("#waves .wave").last
    expect()(last_wave.locator("rect.fail")).to_have_count(1)
    expect()(last_wave).to_contain_text("4 ok · 1 failed")
    page.get_by_label("Status").select_option("failed")
    row = page.locator(f"#customers tbody tr[data-customer='{FAILING}']")
    row.get_by_role("button", name="Error").click()
    expect()(page.locator("#customers pre[aria-label='error']")).to_have_text(failed[0]["error"])
    page.get_by_label("Status").select_option("")  # the last wave's customers, the error still open
    page.get_by_label("Wave", exact=True).select_option("3")
    expect()(page.locator("#customers tbody tr[data-customer]")).to_have_count(5)
    expect()(page.locator("#customers pre[aria-label='error']")).to_be_visible()
    shot = screenshot(page, "readme")
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / "docs" / "console.png")
    assert ARTIFACTS in shot.parents


def test_resume_and_both_rollbacks_go_through_the_api(page: Any, console_stack: StackProcess) -> None:
    code, body = console_stack.request(
        "POST", "/api/upgrades/deploy",
        {"component": "dashboard", "version": "v2.1.0", "strategy": "batch", "batchSize": 10, "maxConcurrency": 10},
    )  # fmt: skip
    assert code == 202, body
    upgrade_id = str(body["upgradeId"])
    console_stack.wait_status(upgrade_id, {"halted"})  # cust_abc142 fails, nothing is tolerated
    wait_runs_ended(console_stack, upgrade_id)
    open_upgrade(page, console_stack, upgrade_id)

    # resume, retrying the failed customer: a second execution, requested by the console's identity
    page.get_by_role("button", name="Resume…").click()
    page.get_by_label("Also retry customers whose upgrade failed").check()
    page.locator("#confirm-ok").click()
    expect()(page.locator("#detail-summary")).to_contain_text("Resumed (attempt 2)")
    expect()(page.locator("#activity")).to_contain_text(f"Resume upgrade {upgrade_id}: ")
    status = console_stack.wait_status(upgrade_id, {"halted"})
    assert [a["attempt"] for a in status["attempts"]] == [1, 2]
    wait_runs_ended(console_stack, upgrade_id)
    assert status["attempts"][1]["requestedBy"].startswith("local:")

    # one customer back, from its row
    row = page.locator("#customers tbody tr[data-customer='cust_abc123']").first
    row.get_by_role("button", name="Roll back…").click()
    expect()(page.locator("#confirm-title")).to_have_text("Roll back cust_abc123?")
    page.locator("#confirm-ok").click()
    rollback_row = page.locator("#customers tbody tr[data-customer='cust_abc123']", has_text="rollback")
    expect()(rollback_row).to_have_count(1)

    def rolled_back() -> bool:
        rows = console_stack.get(f"/api/upgrades/{upgrade_id}/logs?operation=rollback&customerId=cust_abc123")["logs"]
        return bool(rows) and rows[0]["status"] == "completed"

    wait_for(rolled_back)

    # then the whole upgrade: every other customer it changed
    page.get_by_role("button", name="Roll back upgrade…").click()
    page.get_by_label("Rollbacks at once (optional)").fill("5")
    page.locator("#confirm-ok").click()
    expect()(page.locator("#activity")).to_contain_text(f"Roll back upgrade {upgrade_id}: ")
    final = console_stack.wait_status(upgrade_id, {"rolled_back", "rollback_incomplete"})
    assert final["status"] == "rolled_back", final
    expect()(page.locator("#detail-summary .detail-head .status")).to_have_text("rolled back")
    expect()(page.locator("[data-action='rollbackCustomer']")).to_have_count(0)  # nothing left to roll back
    activity = page.locator("#activity li")
    expect()(activity).to_have_count(3)
    assert all(text.split(" · ")[1].startswith("local:") for text in activity.all_inner_texts())


def test_rings_show_in_the_fleet_and_a_version_path_through_them_in_the_upgrade(
    page: Any, console_stack: StackProcess
) -> None:
    # Given exporter's promotion rule and an upgrade of one ring (staging: the demo's first five customers),
    # after any exporter upgrade an earlier test left waiting is aborted
    for earlier in console_stack.get("/api/upgrades?component=exporter")["upgrades"]:
        if earlier["status"] in ("pending", "in_progress", "awaiting_continue"):
            uid = str(earlier["upgradeId"])
            assert console_stack.request("POST", f"/api/upgrades/{uid}/abort", {"reason": "rings test"})[0] == 202
            console_stack.wait_status(uid, {"aborted"})
    code, _ = console_stack.request(
        "PUT", "/api/promotion-rules/exporter", {"minSuccessPercent": 100, "minBakeSeconds": 0}
    )
    assert code == 200
    code, body = console_stack.request("POST", "/api/upgrades/deploy",
                                       {"component": "exporter", "version": "v4.0.0", "strategy": "all",
                                        "rings": ["staging"]})  # fmt: skip
    assert code == 202, body
    upgrade_id = str(body["upgradeId"])
    # When the fleet view is opened, then every ring's count is the API's and each customer shows its ring
    page.goto(f"{console_stack.url}/admin/queues?interval=300#/fleet")
    fleet = console_stack.get("/api/fleet")
    for ring in fleet["rings"]:
        expect()(page.locator("#fleet-summary")).to_contain_text(f"ring {ring}")
    first = page.locator("#fleet-customers tr[data-customer='cust_abc123'] td").nth(1)
    expect()(first).to_have_text("staging")
    # When the upgrade is opened, then its rings and the version's path through the rings are shown
    open_upgrade(page, console_stack, upgrade_id)
    expect()(page.locator("#detail-summary dl.facts")).to_contain_text("staging")
    rings = page.locator("#rings li")
    expect()(rings).to_have_count(len(fleet["rings"]))
    expect()(page.locator("#rings li[data-ring='staging']")).to_contain_text(f"#{upgrade_id}")
    expect()(page.locator("#rings li[data-ring='early']")).to_contain_text("waits: it never ran on internal")
    screenshot(page, "rings")


def test_a_release_train_shows_each_components_from_and_to(page: Any, console_stack: StackProcess) -> None:
    # Given a train of dashboard and mosquitto on the healthy demo customers (an earlier test's upgrade of either,
    # still waiting, is aborted first: a train is refused while one of its components is being upgraded)
    train = {"dashboard": "v7.0.0", "mosquitto": "2.0.19"}
    for component in train:
        for earlier in console_stack.get(f"/api/upgrades?component={component}")["upgrades"]:
            if earlier["status"] in ("pending", "in_progress", "awaiting_continue"):
                uid = str(earlier["upgradeId"])
                assert console_stack.request("POST", f"/api/upgrades/{uid}/abort", {"reason": "train test"})[0] == 202
                console_stack.wait_status(uid, {"aborted"})
    code, body = console_stack.request("POST", "/api/upgrades/deploy",
                                       {"components": train, "strategy": "all", "customerIds": HEALTHY[:2]})  # fmt: skip
    assert code == 202, body
    upgrade_id = str(body["upgradeId"])
    console_stack.wait_status(upgrade_id, {"completed"})
    # When the upgrade is opened, then the heading and the facts name the train, and each customer's row shows
    # every component's from -> to
    open_upgrade(page, console_stack, upgrade_id)
    expect()(page.locator("#detail-summary .detail-head h3")).to_contain_text(
        "release train dashboard → v7.0.0, mosquitto → 2.0.19"
    )
    expect()(page.locator("#detail-summary dl.facts")).to_contain_text("dashboard v7.0.0 + mosquitto 2.0.19")
    step = page.locator(f"#customer-table tr[data-customer='{HEALTHY[0]}'] .train-step[data-component='mosquitto']")
    expect()(step).to_contain_text("→ 2.0.19")
    screenshot(page, "train")
