"""AnalysisInconclusive (`crashed_step`, real PostgreSQL): a gate step that failed after its retries records the
wave inconclusive with the error as evidence, once; a verdict recorded before the failure stands (a fail still
halts); the Catch's Cause is reduced to the error's message. Through the real state machine:
tests/e2e/test_analysis_gate.py."""

from __future__ import annotations

import json

from upgrader import factory
from upgrader.analysis.repository import AnalysisRepository
from upgrader.rollout.analysis_gate import MAX_EVIDENCE_CHARS, crashed_step, failure_evidence
from upgrader.rollout.analysis_verdicts import record_verdict

from tests.analysis.test_measurement_verdicts import gate_state, started_upgrade

LAMBDA_CAUSE = json.dumps({"errorMessage": "boom", "errorType": "KeyError", "requestId": "r-1",
                           "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n']})  # fmt: skip


def crashed(upgrade_id: int, failure: dict[str, str]) -> dict:
    state = {**gate_state(upgrade_id), "analysisFailure": failure, "analysisStep": "wait", "analysisRound": 1}
    return crashed_step(state, repo=AnalysisRepository(factory.database()), runs=factory.runs(),
                        db=factory.database())  # fmt: skip


def test_a_crashed_step_is_inconclusive_once_with_the_error_as_evidence(make_customers, fake_workflow, sql):
    upgrade_id = started_upgrade(make_customers)
    state = crashed(upgrade_id, {"Error": "KeyError", "Cause": LAMBDA_CAUSE})
    assert (state["decision"], state["analysisVerdict"]) == ("await_continue", {"wave": 0, "verdict": "inconclusive"})
    assert "analysisFailure" not in state and "analysisStep" not in state  # the next wave's gate starts afresh
    again = crashed(upgrade_id, {"Error": "States.Timeout", "Cause": "later"})  # a retry, or a second crash
    assert again["decision"] == "await_continue"
    [row] = sql("SELECT verdict, reason, checks FROM analysis_verdicts WHERE upgrade_id = %s", upgrade_id)
    assert row["reason"] == "the analysis step failed: KeyError: boom"
    assert {c["check"]: c["evidence"] for c in row["checks"]} == {
        name: {"error": "KeyError", "cause": "boom"} for name in ("per-customer", "over-wave", "comparison")}  # fmt: skip
    events = sql("SELECT detail_type FROM event_outbox WHERE detail_type LIKE 'Analysis%'")
    assert [e["detail_type"] for e in events] == ["Analysis Inconclusive"]


def test_a_fail_recorded_before_the_crash_stands_and_halts(make_customers, fake_workflow, sql):
    upgrade_id = started_upgrade(make_customers)
    record_verdict(factory.database(), upgrade_id, 0, "fail", "comparison: worse", [])  # then JudgeWave failed
    state = crashed(upgrade_id, {"Error": "Lambda.Unknown", "Cause": "out of memory"})
    assert (state["decision"], state["analysisVerdict"]["verdict"]) == ("halt", "fail")
    assert factory.runs().halt_reason(upgrade_id) == "analysis: wave 1 failed: comparison: worse"
    events = sql("SELECT detail_type FROM event_outbox WHERE detail_type LIKE 'Analysis%'")
    assert [e["detail_type"] for e in events] == ["Analysis Failed"]


def test_the_evidence_is_the_error_and_its_message_without_the_stack_trace():
    assert failure_evidence({"Error": "KeyError", "Cause": LAMBDA_CAUSE}) == {"error": "KeyError", "cause": "boom"}
    assert failure_evidence({"Error": "States.Timeout", "Cause": "not JSON"}) == {"error": "States.Timeout",
                                                                                  "cause": "not JSON"}  # fmt: skip
    assert failure_evidence(None) == {"error": "unknown", "cause": "no cause given"}
    assert len(failure_evidence({"Error": "E", "Cause": "x" * 5000})["cause"]) == MAX_EVIDENCE_CHARS
