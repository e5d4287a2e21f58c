"""`GET /api/upgrades/{id}/analysis` and the status' `analysis`: the gate's verdicts and measurements as
stored, through the real handler (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from upgrader import factory
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.repository import AnalysisRepository
from upgrader.rollout.analysis_verdicts import record_verdict

from tests.analysis.test_analysis_request import REQUEST
from tests.api.helpers import call, status
from tests.api.test_plan import deploy


def analysis(upgrade_id: str):
    return call("api_upgrades", "api_upgrades_analysis", f"/api/upgrades/{upgrade_id}/analysis",
                {"upgradeId": upgrade_id})  # fmt: skip


def test_an_unknown_upgrade_is_404(env):
    code, answer = analysis("999999")
    assert code == 404, answer


def test_the_verdicts_and_measurements_are_shown_newest_first_and_the_status_has_the_latest(
    make_customers, fake_workflow, sql
):
    make_customers(5)
    code, started, _ = deploy(REQUEST)
    assert code == 202, started
    uid = started["upgradeId"]
    code, empty = analysis(uid)
    assert code == 200 and empty["checks"] == ["error-rate"] and empty["waves"] == [] and empty["measurements"] == []
    assert status(uid)[1]["analysis"] is None

    repo = AnalysisRepository(factory.database())
    now = datetime.now(UTC)
    repo.store(int(uid), 0, 0, [Measurement("error-rate", "cust_0001", "upgraded", "q1", now, value=0.03),
                                Measurement("error-rate", "cust_0002", "control", "q2", now, error="HTTP 503")])  # fmt: skip
    repo.store(int(uid), 0, 1, [Measurement("error-rate", "cust_0001", "upgraded", "q1", now, value=0.04)])
    evidence = {"p": 0.001, "upgraded": {"cust_0001": 0.035}}
    record_verdict(factory.database(), int(uid), 0, "fail", "error-rate: worse", [
        {"check": "error-rate", "verdict": "fail", "rule": "U test", "reason": "worse", "evidence": evidence}])  # fmt: skip
    # a retried JudgeWave keeps the first verdict and adds no second event
    assert record_verdict(factory.database(), int(uid), 0, "pass", "retried", []) == "fail"
    published = sql("SELECT detail_type, severity, detail FROM event_outbox WHERE detail_type LIKE 'Analysis%'")
    assert [(e["detail_type"], e["severity"]) for e in published] == [("Analysis Failed", "critical")]
    assert published[0]["detail"]["analysis"] == {"wave": 0, "verdict": "fail", "reason": "error-rate: worse",
        "checks": [{"check": "error-rate", "verdict": "fail", "reason": "worse", "pValue": 0.001}]}  # fmt: skip

    code, shown = analysis(uid)
    assert code == 200, shown
    assert [(w["wave"], w["verdict"], w["reason"]) for w in shown["waves"]] == [(0, "fail", "error-rate: worse")]
    assert shown["waves"][0]["checks"][0]["evidence"] == evidence
    assert [(m["round"], m["customerId"], m["value"], m["error"]) for m in shown["measurements"]] == [
        (1, "cust_0001", 0.04, None), (0, "cust_0001", 0.03, None), (0, "cust_0002", None, "HTTP 503")]  # fmt: skip
    assert status(uid)[1]["analysis"] == {"wave": 0, "verdict": "fail", "rollback": None}  # no autoRollback
