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
from upgrader.rollout import analysis_gate, orchestration

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
    assert (status["completed"], status["analysis"]) == (3, {"wave": 0, "verdict": "fail", "rollback": None})
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
    assert waiting["analysis"] == {"wave": 0, "verdict": "inconclusive", "rollback": None}
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
    assert (status["completed"], status["analysis"]) == (2, {"wave": 0, "verdict": "fail", "rollback": None})
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


def running_api_tag(stack: Any, row: dict[str, Any]) -> str:
    deployment = stack.cluster.workload(row["namespace"], row["release_name"], "api")
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"]).rsplit(":", 1)[-1]


def test_a_failed_wave_with_auto_rollback_rolls_back_only_that_wave(
    stack,
    make_customers,
    scripted_server,  # noqa: F811
    monkeypatch,
    sql,
):
    """Wave 1 passes its analysis, wave 2 fails it: the upgrade halts, wave 2's customers are rolled back (a run of
    scope "wave", which the status and the Rollback Finished event name), wave 1's keep the new version. Each
    FinalizeRun fails once after its commit (its Retry runs it again): the rollback is recorded once."""
    finalized: list[str] = []

    def finalize_then_fail_once(event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        result = original(event, **kwargs)
        finalized.append(str(event["runName"]))
        if finalized.count(str(event["runName"])) == 1:
            raise DatabaseUnavailable("the connection dropped after the commit")
        return result

    original = orchestration.finalize_run
    monkeypatch.setattr(orchestration, "finalize_run", finalize_then_fail_once)
    make_customers(6)
    started = deploy(strategy="batch", batchSize=2, autoRollback=True, analysis=analysis(scripted_server.url))
    uid = int(started["upgradeId"])
    upgraded = sql("SELECT * FROM customer_upgrade_logs WHERE upgrade_id = %s AND operation = 'upgrade'", uid)
    wave_of = {r["customer_id"]: r["wave"] for r in upgraded}
    assert sorted(wave_of.values()) == [0, 0, 1, 1, 2, 2]
    for customer, wave in wave_of.items():  # the first round is measured intervalSeconds after the wave ends
        scripted_server.answer(f"/metrics/{customer}", body={"errorRate": 0.2 if wave == 1 else 0.01})
    assert stack.wait_execution(started["jobId"], timeout=180)["status"] == "SUCCEEDED"

    status = stack.status(started["upgradeId"])
    assert status["status"] == "halted" and status["haltReason"].startswith("analysis: wave 2 failed"), status
    assert status["analysis"] == {"wave": 1, "verdict": "fail", "rollback": "completed"}, status
    # completed counts the upgrade's own rows (as after an abort's rollback), rolledBack the rollbacks since
    assert (status["completed"], status["rolledBack"], status["pending"] + status["skipped"]) == (4, 2, 2), status
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs WHERE upgrade_id = %s "
                                             "AND operation = 'upgrade'", uid)}  # fmt: skip
    for customer, row in rows.items():
        expected = {0: "v1.2.0", 1: row["from_version"], 2: row["from_version"]}[row["wave"]]
        assert running_api_tag(stack, row) == expected, (customer, row["wave"])
    rollbacks = sql("SELECT customer_id, status FROM customer_upgrade_logs WHERE upgrade_id = %s "
                    "AND operation = 'rollback'", uid)  # fmt: skip
    assert sorted((r["customer_id"], r["status"]) for r in rollbacks) == sorted(
        (c, "completed") for c, w in wave_of.items() if w == 1)  # fmt: skip
    runs = sql("SELECT scope, wave, requested_by, execution_name FROM upgrade_runs WHERE upgrade_id = %s "
               "AND kind = 'rollback'", uid)  # fmt: skip
    assert runs == [{"scope": "wave", "wave": 1, "requested_by": "analysis", "execution_name": started["jobId"]}]
    finished = sql("SELECT detail FROM event_outbox WHERE detail_type = 'Rollback Finished'")
    assert [e["detail"]["run"] for e in finished] == [{
        "runName": f"{started['jobId']}-rollback", "wholeUpgrade": False, "completed": 2, "failed": 0,
        "scope": "wave", "wave": 1}]  # fmt: skip
    assert [e["detail"]["upgrade"]["status"] for e in finished] == ["halted"]
    execution = started["jobId"]
    assert finalized == [execution, execution, f"{execution}-rollback", f"{execution}-rollback"]  # each retried
