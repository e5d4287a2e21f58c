"""The analysis gate through the real state machine (in-process engine), PostgreSQL and the simulated cluster,
with an HTTP provider answering from a scripted server: a check that fails halts the canary by itself (its
`Analysis Failed` event matches its schema: the autouse check of tests/e2e); a gate step that crashes is
inconclusive, recorded once with its error as the evidence and one `Analysis Inconclusive` event even when the
recording step is retried: the approval gate waits for a person, and /continue goes on."""

from __future__ import annotations

import time
from typing import Any

import pytest
from upgrader.infra.errors import DatabaseUnavailable
from upgrader.rollout import analysis_gate

from tests.analysis.conftest import scripted_server  # noqa: F401 (the fixture)
from tests.api.helpers import call, continue_, deploy

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
    sql,
):
    make_customers(6)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the analysis step crashed")

    recorded: list[str] = []

    def record_then_fail_once(*args: Any, **kwargs: Any) -> str:
        recorded.append(original(*args, **kwargs))
        if len(recorded) == 1:  # committed, then the Lambda fails: AnalysisInconclusive's Retry runs it again
            raise DatabaseUnavailable("the connection dropped after the commit")
        return recorded[-1]

    original = analysis_gate.record_verdict
    monkeypatch.setattr(analysis_gate, "measure_step", crash)
    monkeypatch.setattr(analysis_gate, "record_verdict", record_then_fail_once)
    started = deploy(strategy="canary", canaryPercent=50, analysis=analysis(scripted_server.url))
    waiting = stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    assert (waiting["completed"], waiting["pending"], waiting["haltReason"]) == (3, 3, None), waiting
    assert waiting["analysis"] == {"wave": 0, "verdict": "inconclusive"}
    assert recorded == ["inconclusive", "inconclusive"]  # the step ran twice ...
    events = sql("SELECT detail FROM event_outbox WHERE detail_type = 'Analysis Inconclusive'")
    assert len(events) == 1, events  # ... and recorded once
    reason = "the analysis step failed: RuntimeError: the analysis step crashed"
    assert events[0]["detail"]["analysis"]["reason"] == reason
    code, shown = call("api_upgrades", "api_upgrades_analysis", f"/api/upgrades/{started['upgradeId']}/analysis",
                       {"upgradeId": started["upgradeId"]})  # fmt: skip
    assert code == 200, shown
    assert [(c["check"], c["verdict"], c["evidence"]) for c in shown["waves"][0]["checks"]] == [
        ("error-rate", "inconclusive", {"error": "RuntimeError", "cause": "the analysis step crashed"})]  # fmt: skip
    code, body = continue_(started["upgradeId"])
    assert code == 200, body
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    assert stack.status(started["upgradeId"])["status"] == "completed"


def rounds_measured(sql: Any, upgrade_id: str) -> list[int]:
    rows = sql("SELECT DISTINCT round FROM analysis_measurements WHERE upgrade_id = %s ORDER BY round", int(upgrade_id))
    return [r["round"] for r in rows]


def states_entered(stack: Any, job_id: str) -> list[str]:
    history = stack.runtime.sfn.get_execution_history(executionArn=stack.runtime.execution_arn(job_id), maxResults=1000)
    return [e["stateEnteredEventDetails"]["name"] for e in history["events"] if "stateEnteredEventDetails" in e]


def test_the_analysis_measures_through_the_bake_and_a_fail_during_it_halts_at_once(
    stack,
    make_customers,
    scripted_server,  # noqa: F811
    sql,
):
    ids = make_customers(4)
    for customer in ids:
        scripted_server.answer(f"/metrics/{customer}", body={"errorRate": 0.01})
    started = deploy(strategy="batch", batchSize=2, bakeSeconds=600, analysis=analysis(scripted_server.url))
    uid = started["upgradeId"]
    stack.wait_for(lambda: rounds_measured(sql, uid) == [0], timeout=90)  # the check's one round passed...
    for customer in ids:
        scripted_server.answer(f"/metrics/{customer}", body={"errorRate": 0.2})  # ... then the errors rise
    began = time.monotonic()
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    assert time.monotonic() - began < 60  # not the 600 s bake
    status = stack.status(uid)
    assert status["status"] == "halted" and status["haltReason"].startswith("analysis: wave 1 failed"), status
    assert (status["completed"], status["analysis"]) == (2, {"wave": 0, "verdict": "fail"})
    assert rounds_measured(sql, uid) == [0, 1]  # the bake's round found it
    assert "BakeBetweenWaves" not in states_entered(stack, started["jobId"])


def test_a_bake_measured_through_is_not_baked_twice(stack, make_customers, scripted_server, sql):  # noqa: F811
    ids = make_customers(4)
    for customer in ids:
        scripted_server.answer(f"/metrics/{customer}", body={"errorRate": 0.01})
    started = deploy(strategy="batch", batchSize=2, bakeSeconds=12, analysis=analysis(scripted_server.url))
    assert stack.wait_execution(started["jobId"], timeout=180)["status"] == "SUCCEEDED"
    status = stack.status(started["upgradeId"])
    assert (status["status"], status["completed"], status["continuedBy"]) == ("completed", 4, None), status
    # one round a check asks for, then rounds every 5 s until the 12 s bake is over: 3 rounds, judged once
    assert rounds_measured(sql, started["upgradeId"]) == [0, 1, 2]
    entered = states_entered(stack, started["jobId"])
    assert "BakeBetweenWaves" not in entered and entered.count("JudgeWave") == 1
