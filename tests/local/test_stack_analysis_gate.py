"""The analysis gate through the real state machine (the local engine runs the ASL with the real handlers),
the simulated workloads' metrics and a real Prometheus (Debian's package): a bad version's canary halts by
itself with reason "analysis" and, with autoRollback, its customers are rolled back; a good version passes the
gate without anyone typing continue; a Prometheus that does not answer is inconclusive: the gate waits for a
person."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.local.conftest import StackProcess, free_port, stack_env
from tests.support.database import temporary_database
from tests.support.tools import require_tool

pytestmark = pytest.mark.e2e
FINAL = {"completed", "completed_with_failures", "failed", "halted", "aborted", "rolled_back", "rollback_incomplete"}
CUSTOMERS = 10
ERROR_RATIO = ('sum(rate(app_errors_total{customer="{{customerId}}",component="{{component}}"}[{{since}}])) / '
               'sum(rate(app_requests_total{customer="{{customerId}}",component="{{component}}"}[{{since}}]))')  # fmt: skip
ANALYSIS: dict[str, Any] = {"checks": [{"name": "error-ratio", "provider": "prometheus", "query": ERROR_RATIO,
                        "intervalSeconds": 20, "count": 1,
                        "judgement": {"kind": "comparison", "toleratedDegradation": 0.25, "confidence": 0.95}}],
            "onPass": "continue", "controlSample": 5}  # fmt: skip


def deploy(stack: StackProcess, version: str, **more: Any) -> str:
    request = {"component": "api", "version": version, "strategy": "canary", "canaryPercent": 50, "analysis": ANALYSIS}
    code, body = stack.request("POST", "/api/upgrades/deploy", {**request, **more})
    assert code == 202, body
    return str(body["upgradeId"])


def test_a_bad_canary_halts_by_itself_and_a_good_one_passes_without_a_continue(tmp_path):
    require_tool("prometheus", "/usr/bin/prometheus")
    with temporary_database(prefix="upgrades_gate") as url:
        stack = StackProcess(["--analysis", "--customers", str(CUSTOMERS), "--job-seconds", "0.2", "--poll-seconds", "0"],
                             stack_env(DATABASE_URL=url), tmp_path)  # fmt: skip
        try:
            bad = deploy(stack, "v9.9.9-bad", autoRollback=True)
            status = stack.wait_status(bad, FINAL | {"awaiting_continue"}, timeout=180)
            assert (status["haltReason"] or "").startswith("analysis: wave 1 failed"), status
            deadline = time.monotonic() + 120
            while status["rolledBack"] < CUSTOMERS // 2 and time.monotonic() < deadline:
                time.sleep(0.5)
                status = stack.get(f"/api/upgrades/{bad}/status")
            assert status["rolledBack"] == CUSTOMERS // 2, status  # the canary wave, and no one else was touched
            assert status["pending"] + status["skipped"] == CUSTOMERS // 2, status
            good = deploy(stack, "v9.9.10")
            status = stack.wait_status(good, FINAL | {"awaiting_continue"}, timeout=180)
            assert status["status"] == "completed", status
            assert status["continuedBy"] is None
        finally:
            assert stack.stop(signal.SIGINT) == 0, stack.output


def test_a_provider_that_does_not_answer_is_inconclusive_and_the_gate_waits_for_a_person(tmp_path):
    quick = {**ANALYSIS, "checks": [{**ANALYSIS["checks"][0], "intervalSeconds": 5}], "controlSample": 3}
    with temporary_database(prefix="upgrades_gate_down") as url:
        down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        stack = StackProcess(["--customers", "8", "--job-seconds", "0.2", "--poll-seconds", "0"],
                             stack_env(DATABASE_URL=url, ANALYSIS_PROMETHEUS_URL=down), tmp_path)  # fmt: skip
        try:
            upgrade = deploy(stack, "v9.9.10", canaryPercent=25, analysis=quick)
            status = stack.wait_status(upgrade, FINAL | {"awaiting_continue"}, timeout=180)
            assert status["status"] == "awaiting_continue" and status["haltReason"] is None, status
            assert status["completed"] == 2 and status["pending"] == 6, status
            time.sleep(3)  # it stays there: nobody continued
            assert stack.get(f"/api/upgrades/{upgrade}/status")["status"] == "awaiting_continue"
            code, body = stack.request("POST", f"/api/upgrades/{upgrade}/continue", {})
            assert code in (200, 202), body
            assert stack.wait_status(upgrade, FINAL, timeout=180)["status"] == "completed"
        finally:
            assert stack.stop(signal.SIGINT) == 0, stack.output


def test_an_abort_stops_the_analysis_at_once(tmp_path):
    slow = {**ANALYSIS, "checks": [{**ANALYSIS["checks"][0], "intervalSeconds": 600}], "controlSample": 3}
    with temporary_database(prefix="upgrades_gate_abort") as url:
        stack = StackProcess(["--customers", "8", "--job-seconds", "0.2", "--poll-seconds", "0"],
                             stack_env(DATABASE_URL=url), tmp_path)  # fmt: skip
        try:
            upgrade = deploy(stack, "v9.9.10", canaryPercent=25, analysis=slow)
            deadline = time.monotonic() + 120
            status = stack.get(f"/api/upgrades/{upgrade}/status")
            while status["gate"] != "bake" and time.monotonic() < deadline:  # waiting between two rounds
                time.sleep(0.2)
                status = stack.get(f"/api/upgrades/{upgrade}/status")
            assert status["gate"] == "bake" and status["completed"] == 2, status
            code, body = stack.request("POST", f"/api/upgrades/{upgrade}/abort", {"reason": "enough"})
            assert code in (200, 202), body
            started = time.monotonic()
            status = stack.wait_status(upgrade, FINAL, timeout=60)
            assert status["status"] == "aborted" and time.monotonic() - started < 60, status
            assert status["pending"] + status["skipped"] == 6 and status["analysis"] is None, status
            measured = stack.get(f"/api/upgrades/{upgrade}/analysis")
            assert measured["measurements"] == [] and measured["waves"] == []  # it stopped before a round
        finally:
            assert stack.stop(signal.SIGINT) == 0, stack.output
