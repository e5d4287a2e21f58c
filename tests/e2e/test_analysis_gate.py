"""The analysis gate through the real state machine (in-process engine), PostgreSQL and the simulated cluster,
with an HTTP provider answering from a scripted server: a check that fails halts the canary by itself (its
`Analysis Failed` event matches its schema: the autouse check of tests/e2e); a gate step that crashes is
inconclusive: the approval gate waits for a person, and /continue goes on."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader.rollout import analysis_gate

from tests.analysis.conftest import scripted_server  # noqa: F401 (the fixture)
from tests.api.helpers import continue_, deploy

pytestmark = pytest.mark.e2e


def analysis(url: str) -> dict[str, Any]:
    check = {"name": "error-rate", "provider": "http", "intervalSeconds": 5, "count": 1,
             "query": {"url": f"{url}/metrics/{{{{customerId}}}}", "jsonPath": "$.errorRate"},
             "failureCondition": {"op": ">", "value": 0.05}, "judgement": {"kind": "threshold"}}  # fmt: skip
    return {"checks": [check], "controlSample": 2}


def test_a_failing_check_halts_the_canary_by_itself(stack, make_customers, scripted_server, sql):  # noqa: F811
    ids = make_customers(6)
    for customer in ids:
        scripted_server.answer(f"/metrics/{customer}", body={"errorRate": 0.2})
    started = deploy(strategy="canary", canaryPercent=50, analysis=analysis(scripted_server.url))
    assert started["waves"] == [3, 3]
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    status = stack.status(started["upgradeId"])
    assert status["status"] == "halted" and status["haltReason"].startswith("analysis: wave 1 failed"), status
    assert (status["completed"], status["analysis"]) == (3, {"wave": 0, "verdict": "fail"})
    assert len(stack.cluster.created_jobs) == 3  # the second wave never started
    kinds = [r["detail_type"] for r in sql("SELECT detail_type FROM event_outbox ORDER BY id")]
    assert "Analysis Failed" in kinds and "Upgrade Halted" in kinds


def test_a_gate_step_that_crashes_is_inconclusive_and_waits_for_a_person(
    stack,
    make_customers,
    scripted_server,  # noqa: F811
    monkeypatch,
):
    make_customers(6)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the analysis step crashed")

    monkeypatch.setattr(analysis_gate, "measure_step", crash)
    started = deploy(strategy="canary", canaryPercent=50, analysis=analysis(scripted_server.url))
    waiting = stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    assert (waiting["completed"], waiting["pending"], waiting["haltReason"]) == (3, 3, None), waiting
    code, body = continue_(started["upgradeId"])
    assert code == 200, body
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    assert stack.status(started["upgradeId"])["status"] == "completed"
