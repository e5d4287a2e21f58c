"""Each measurement's own verdict, stored by JudgeWave with the wave's verdict (real PostgreSQL, the real gate
step) and shown by `GET /api/upgrades/{id}/analysis`: per value for a threshold per customer, the wave's verdict
for a threshold over the wave, the comparison's verdict for both cohorts; a retried JudgeWave changes none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from upgrader import factory
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.repository import AnalysisRepository
from upgrader.rollout.analysis_gate import judge_step

from tests.analysis.test_analysis_api import analysis
from tests.analysis.test_analysis_request import CHECK, REQUEST
from tests.api.test_plan import deploy

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PER_CUSTOMER = {**CHECK, "name": "per-customer", "failureCondition": {"op": ">", "value": 0.02},
                "judgement": {"kind": "threshold", "scope": "customer"}}  # fmt: skip
OVER_WAVE = {**CHECK, "name": "over-wave", "failureCondition": {"op": ">", "value": 0.02},
             "judgement": {"kind": "threshold", "scope": "wave"}}  # fmt: skip
COMPARISON = {**CHECK, "name": "comparison"}
CHECKS = [PER_CUSTOMER, OVER_WAVE, COMPARISON]


def started_upgrade(make_customers: Any) -> int:
    make_customers(5)
    code, started, _ = deploy({**REQUEST, "analysis": {"checks": CHECKS, "onPass": "continue", "controlSample": 3}})
    assert code == 202, started
    return int(started["upgradeId"])


def gate_state(upgrade_id: int) -> dict[str, Any]:
    return {"upgradeId": upgrade_id, "runName": "run-judge", "lastWave": {"wave": 0},
            "analysis": {"checks": CHECKS, "onPass": "continue", "controlSample": 3}}  # fmt: skip


def measure(repo: AnalysisRepository, upgrade_id: int, check: str, values: dict[tuple[str, str], list[float]]) -> None:
    for round_index in range(2):
        at = AT + timedelta(seconds=5 * round_index)
        repo.store(upgrade_id, 0, round_index, [
            Measurement(check, customer, cohort, "q", at, value=series[round_index])  # type: ignore[arg-type]
            for (customer, cohort), series in values.items()])  # fmt: skip


def stored(sql: Any, upgrade_id: int) -> dict[tuple[str, str, int], str | None]:
    rows = sql("SELECT check_name, customer_id, round, verdict FROM analysis_measurements WHERE upgrade_id = %s",
               upgrade_id)  # fmt: skip
    return {(r["check_name"], r["customer_id"], r["round"]): r["verdict"] for r in rows}


def test_each_measurement_keeps_the_verdict_it_was_given_and_the_api_shows_it(make_customers, fake_workflow, sql):
    upgrade_id = started_upgrade(make_customers)
    repo = AnalysisRepository(factory.database())
    upgraded = {("u1", "upgraded"): [0.01, 0.03], ("u2", "upgraded"): [0.01, 0.01]}
    measure(repo, upgrade_id, "per-customer", {**upgraded, ("c1", "control"): [0.5, 0.5]})
    measure(repo, upgrade_id, "over-wave", {**upgraded, ("c1", "control"): [0.5, 0.5]})
    # 3 upgraded and 3 control customers with data: the comparison can judge, and passes
    measure(repo, upgrade_id, "comparison", {**{(f"u{i}", "upgraded"): [0.01, 0.01] for i in range(3)},
                                             **{(f"c{i}", "control"): [0.01, 0.01] for i in range(3)}})  # fmt: skip

    state = judge_step(gate_state(upgrade_id), repo=repo, runs=factory.runs(), db=factory.database())

    assert state["analysisVerdict"] == {"wave": 0, "verdict": "fail"}
    verdicts = stored(sql, upgrade_id)
    # per customer: each value on its own; the control group takes no part in a threshold
    assert [verdicts[("per-customer", c, r)] for c, r in [("u1", 0), ("u1", 1), ("u2", 0), ("u2", 1), ("c1", 0)]] == [
        "pass", "fail", "pass", "pass", None]  # fmt: skip
    # over the wave: the mean 0.015 passes, every upgraded measurement carries it
    assert {verdicts[("over-wave", c, r)] for c in ("u1", "u2") for r in (0, 1)} == {"pass"}
    assert verdicts[("over-wave", "c1", 0)] is None
    # a comparison: every measurement of both cohorts carries the comparison's verdict
    assert {v for (check, _, _), v in verdicts.items() if check == "comparison"} == {"pass"}

    code, shown = analysis(str(upgrade_id))
    assert code == 200, shown
    assert {(m["check"], m["customerId"], m["round"], m["verdict"]) for m in shown["measurements"]} >= {
        ("per-customer", "u1", 1, "fail"), ("per-customer", "u1", 0, "pass"), ("comparison", "c2", 0, "pass"),
        ("per-customer", "c1", 0, None)}  # fmt: skip


def test_a_retried_judge_step_changes_no_measurements_verdict(make_customers, fake_workflow, sql):
    upgrade_id = started_upgrade(make_customers)
    repo = AnalysisRepository(factory.database())
    measure(repo, upgrade_id, "per-customer", {("u1", "upgraded"): [0.01, 0.01]})
    first = judge_step(gate_state(upgrade_id), repo=repo, runs=factory.runs(), db=factory.database())
    assert first["analysisVerdict"]["verdict"] == "inconclusive"  # the other checks measured nothing
    before = stored(sql, upgrade_id)
    assert before == {("per-customer", "u1", 0): "pass", ("per-customer", "u1", 1): "pass"}
    # a late measurement that would fail, then JudgeWave again (a retry): the first verdicts stand
    repo.store(upgrade_id, 0, 2, [Measurement("per-customer", "u1", "upgraded", "q", AT + timedelta(seconds=10),
                                              value=0.5)])  # fmt: skip
    again = judge_step(gate_state(upgrade_id), repo=repo, runs=factory.runs(), db=factory.database())
    assert again["analysisVerdict"]["verdict"] == "inconclusive"
    assert stored(sql, upgrade_id) == {**before, ("per-customer", "u1", 2): None}
