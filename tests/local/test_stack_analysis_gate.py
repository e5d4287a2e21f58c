"""The analysis gate through the real state machine (the local engine runs the ASL with the real handlers),
the simulated workloads' metrics and a real Prometheus (Debian's package): a bad version's canary halts by
itself with reason "analysis"; a good version passes the gate without anyone typing continue."""

from __future__ import annotations

import signal

import pytest

from tests.local.conftest import StackProcess, stack_env
from tests.support.database import temporary_database
from tests.support.tools import require_tool

pytestmark = pytest.mark.e2e
CUSTOMERS = 10
ERROR_RATIO = ('sum(rate(app_errors_total{customer="{{customerId}}",component="{{component}}"}[{{since}}])) / '
               'sum(rate(app_requests_total{customer="{{customerId}}",component="{{component}}"}[{{since}}]))')  # fmt: skip
ANALYSIS = {"checks": [{"name": "error-ratio", "provider": "prometheus", "query": ERROR_RATIO,
                        "intervalSeconds": 20, "count": 1,
                        "judgement": {"kind": "comparison", "toleratedDegradation": 0.25, "confidence": 0.95}}],
            "onPass": "continue", "controlSample": 5}  # fmt: skip


def deploy(stack: StackProcess, version: str) -> str:
    code, body = stack.request("POST", "/api/upgrades/deploy", {"component": "api", "version": version,
                               "strategy": "canary", "canaryPercent": 50, "analysis": ANALYSIS})  # fmt: skip
    assert code == 202, body
    return str(body["upgradeId"])


def test_a_bad_canary_halts_by_itself_and_a_good_one_passes_without_a_continue(tmp_path):
    require_tool("prometheus", "/usr/bin/prometheus")
    with temporary_database(prefix="upgrades_gate") as url:
        stack = StackProcess(["--analysis", "--customers", str(CUSTOMERS), "--job-seconds", "0.2", "--poll-seconds", "0"],
                             stack_env(DATABASE_URL=url), tmp_path)  # fmt: skip
        try:
            bad = deploy(stack, "v9.9.9-bad")
            status = stack.wait_status(bad, {"halted", "failed", "completed", "awaiting_continue"}, timeout=180)
            assert status["status"] in ("halted", "failed"), status
            assert (status["haltReason"] or "").startswith("analysis: wave 1 failed"), status
            assert status["completed"] == CUSTOMERS // 2 and status["pending"] + status["skipped"] >= CUSTOMERS // 2
            code, _ = stack.request("POST", f"/api/upgrades/{bad}/abort", {})
            good = deploy(stack, "v9.9.10")
            status = stack.wait_status(good, {"halted", "failed", "completed", "awaiting_continue"}, timeout=180)
            assert status["status"] == "completed", status
            assert status["continuedBy"] is None
        finally:
            assert stack.stop(signal.SIGINT) == 0, stack.output
