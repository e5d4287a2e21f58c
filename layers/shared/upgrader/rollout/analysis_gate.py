"""The analysis gate between waves, as the state machine runs it (docs/analysis.md): MeasureRound (the first
call opens the window, each later one measures one round of every check for the wave's customers and the
control sample, after a wait of the interval) and JudgeWave (the verdict: pass goes on, fail halts with
reason "analysis", inconclusive waits for a person at the approval gate, with the evidence stored).

Each round first re-reads the abort and halt flags: a stopped upgrade measures nothing more."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from upgrader.analysis.judgement import judge, overall
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.providers import MetricProvider
from upgrader.analysis.repository import AnalysisRepository
from upgrader.analysis.rounds import control_sample, measure_round, targets
from upgrader.analysis.spec import AnalysisSpec
from upgrader.infra.db import Database
from upgrader.rollout.analysis_verdicts import record_verdict
from upgrader.rollout.run_repository import RunRepository

State = dict[str, Any]
ProvidersOf = Callable[[AnalysisSpec], Mapping[str, MetricProvider]]
MAX_MEASUREMENTS_JUDGED = 100_000
HALT_PREFIX = "analysis: "  # a halt reason the gate wrote starts so (finalize_run's autoRollback reads it)


def failed_analysis(halt_reason: str | None) -> bool:
    return bool(halt_reason) and str(halt_reason).startswith(HALT_PREFIX)


def _stopped(state: State, runs: RunRepository) -> bool:
    return bool(runs.stop_reason(str(state["runName"])) or runs.halt_reason(int(state["upgradeId"])))


def measure_step(
    event: State, *, repo: AnalysisRepository, runs: RunRepository, providers_of: ProvidersOf,
    now: datetime | None = None, backoff_seconds: float = 1.0,
) -> State:  # fmt: skip
    """`analysisStep`: wait (the next round after `analysisIntervalSeconds`), judge (every round measured) or
    halt (the upgrade was stopped meanwhile: nothing measured)."""
    state = dict(event)
    moment = now or datetime.now(UTC)
    if _stopped(state, runs):
        state["analysisStep"], state["decision"] = "halt", "halt"
        return state
    spec = AnalysisSpec.model_validate(state["analysis"])
    state["analysisIntervalSeconds"] = spec.interval_seconds
    upgrade_id, wave = int(state["upgradeId"]), int(state["lastWave"]["wave"])
    if state.get("analysisWave") != wave:  # the wave just ended: the window opens now, the first round after a wait
        state.update(analysisWave=wave, analysisSince=moment.isoformat(), analysisRound=0, analysisStep="wait")
        return state
    round_index = int(state["analysisRound"])
    upgraded = repo.upgraded(upgrade_id, wave)
    control = control_sample(upgrade_id, repo.control_candidates(upgrade_id), spec.control_sample)
    since = datetime.fromisoformat(str(state["analysisSince"]))
    measured = measure_round(
        spec.checks_of_round(round_index), targets(repo.component(upgrade_id), upgraded, control, since, moment),
        providers_of(spec), backoff_seconds=backoff_seconds,
    )  # fmt: skip
    repo.store(upgrade_id, wave, round_index, measured)
    state["analysisRound"] = round_index + 1
    state["analysisStep"] = "wait" if round_index + 1 < spec.rounds else "judge"
    return state


def judge_step(event: State, *, repo: AnalysisRepository, runs: RunRepository, db: Database) -> State:
    """The wave's verdict from every stored measurement; the decision ChooseNextStep follows."""
    state = {
        k: v for k, v in event.items() if k not in ("analysisWave", "analysisSince", "analysisRound", "analysisStep")
    }
    upgrade_id, wave = int(state["upgradeId"]), int(state["lastWave"]["wave"])
    if _stopped(state, runs):
        state["decision"] = "halt"
        return state
    spec = AnalysisSpec.model_validate(state["analysis"])
    measured = [_measurement(row) for row in repo.measurements(upgrade_id, wave, limit=MAX_MEASUREMENTS_JUDGED)]
    verdicts = [judge(check, measured) for check in spec.checks]
    result = overall(verdicts)
    failing = [v for v in verdicts if v.verdict == result] or verdicts
    reason = "; ".join(f"{v.check}: {v.reason}" for v in failing) or "no check"
    checks = [json.loads(json.dumps({"check": v.check, "verdict": v.verdict, "rule": v.rule, "reason": v.reason,
                                     "evidence": v.evidence}, default=str)) for v in verdicts]  # fmt: skip
    recorded = record_verdict(db, upgrade_id, wave, result, reason, checks)
    state["analysisVerdict"] = {"wave": wave, "verdict": recorded}
    if recorded == "fail":
        runs.halt(upgrade_id, f"{HALT_PREFIX}wave {wave + 1} failed: {reason}")
        state["decision"] = "halt"
    elif recorded == "inconclusive" or not spec.continues_on_pass:
        state["decision"] = "await_continue"
    else:
        state["decision"] = "next"
    return state


def _measurement(row: Mapping[str, Any]) -> Measurement:
    return Measurement(row["check_name"], row["customer_id"], row["cohort"], row["query"], row["measured_at"],
                       value=row["value"], error=row["error"])  # fmt: skip
