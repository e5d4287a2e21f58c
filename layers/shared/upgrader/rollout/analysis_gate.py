"""The analysis gate between waves, as the state machine runs it (docs/analysis.md): MeasureRound (the first
call opens the window, each later one measures one round of every check for the wave's customers and the
control sample, after a wait of the interval) and JudgeWave (the verdict: pass goes on, fail halts with
reason "analysis", inconclusive waits for a person at the approval gate, with the evidence stored).

Each round first re-reads the abort and halt flags: a stopped upgrade measures nothing more. A step that failed
after its retries (the ASL's Catch) ends in AnalysisInconclusive (`crashed_step`): inconclusive, with the error as
the evidence, recorded once."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from upgrader.analysis.judgement import CheckVerdict, judge, overall
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
MAX_EVIDENCE_CHARS = 500
GATE_KEYS = ("analysisWave", "analysisSince", "analysisRound", "analysisStep", "analysisFailure", "analysisBakeUntil")
MAX_BAKE_ROUNDS = 100  # a long bake measures at most this many rounds: they are spread out (bake / 100 apart)
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
    halt (the upgrade was stopped meanwhile: nothing measured).

    During a bake (a wave whose next one starts by itself after `bakeSeconds`): the rounds go on, every check
    each round, until the bake is over; from the checks' last round on, the wave is judged after each one
    (nothing recorded) and a fail goes to JudgeWave at once: the bake halts on it."""
    state = dict(event)
    moment = now or datetime.now(UTC)
    if _stopped(state, runs):
        state["analysisStep"], state["decision"] = "halt", "halt"
        return state
    spec = AnalysisSpec.model_validate(state["analysis"])
    upgrade_id, wave = int(state["upgradeId"]), int(state["lastWave"]["wave"])
    if state.get("analysisWave") != wave:  # the wave just ended: the window opens now, the first round after a wait
        bake = int(state.get("bakeSeconds") or 0) if state.get("decision") == "next" else 0
        state.update(analysisWave=wave, analysisSince=moment.isoformat(), analysisRound=0, analysisStep="wait",
                     analysisBakeUntil=(moment + timedelta(seconds=bake)).isoformat() if bake else None,
                     analysisIntervalSeconds=max(spec.interval_seconds, math.ceil(bake / MAX_BAKE_ROUNDS)))  # fmt: skip
        return state
    round_index = int(state["analysisRound"])
    upgraded = repo.upgraded(upgrade_id, wave)
    control = control_sample(upgrade_id, repo.control_candidates(upgrade_id), spec.control_sample)
    since = datetime.fromisoformat(str(state["analysisSince"]))
    checks = spec.checks if round_index >= spec.rounds else spec.checks_of_round(round_index)  # a bake's rounds: all
    measured = measure_round(
        checks, targets(repo.component(upgrade_id), upgraded, control, since, moment),
        providers_of(spec), backoff_seconds=backoff_seconds,
    )  # fmt: skip
    repo.store(upgrade_id, wave, round_index, measured)
    state["analysisRound"] = round_index + 1
    if round_index + 1 < spec.rounds:
        state["analysisStep"] = "wait"
    elif _baking(state, moment):  # the bake goes on: a fail so far halts now, else another round
        state["analysisStep"] = "judge" if overall(_judged(spec, repo, upgrade_id, wave)) == "fail" else "wait"
    else:
        state["analysisStep"] = "judge"
    return state


def _baking(state: State, moment: datetime) -> bool:
    until = state.get("analysisBakeUntil")
    return bool(until) and moment < datetime.fromisoformat(str(until))


def _judged(spec: AnalysisSpec, repo: AnalysisRepository, upgrade_id: int, wave: int) -> list[CheckVerdict]:
    measured = [_measurement(row) for row in repo.measurements(upgrade_id, wave, limit=MAX_MEASUREMENTS_JUDGED)]
    return [judge(check, measured) for check in spec.checks]


def judge_step(
    event: State, *, repo: AnalysisRepository, runs: RunRepository, db: Database, now: datetime | None = None
) -> State:
    """The wave's verdict from every stored measurement; the decision ChooseNextStep follows."""
    state = {k: v for k, v in event.items() if k not in GATE_KEYS}
    upgrade_id, wave = int(state["upgradeId"]), int(state["lastWave"]["wave"])
    if _stopped(state, runs):
        state["decision"] = "halt"
        return state
    spec = AnalysisSpec.model_validate(state["analysis"])
    verdicts = _judged(spec, repo, upgrade_id, wave)
    result = overall(verdicts)
    failing = [v for v in verdicts if v.verdict == result] or verdicts
    reason = "; ".join(f"{v.check}: {v.reason}" for v in failing) or "no check"
    checks = [json.loads(json.dumps({"check": v.check, "verdict": v.verdict, "rule": v.rule, "reason": v.reason,
                                     "evidence": v.evidence}, default=str)) for v in verdicts]  # fmt: skip
    judged = [m for v in verdicts for m in v.measurements]
    recorded = record_verdict(db, upgrade_id, wave, result, reason, checks, judged)
    state["analysisVerdict"] = {"wave": wave, "verdict": recorded}
    if recorded == "fail":
        runs.halt(upgrade_id, f"{HALT_PREFIX}wave {wave + 1} failed: {reason}")
        state["decision"] = "halt"
    elif recorded == "inconclusive" or not spec.continues_on_pass:
        state["decision"] = "await_continue"
    else:  # the bake was measured through (over): the next wave now, not a second bake
        baked = bool(event.get("analysisBakeUntil")) and not _baking(dict(event), now or datetime.now(UTC))
        state["decision"] = "next_baked" if baked else "next"
    return state


def crashed_step(event: State, *, repo: AnalysisRepository, runs: RunRepository, db: Database) -> State:
    """AnalysisInconclusive: MeasureRound or JudgeWave failed after its retries (`analysisFailure`, the Catch's
    Error and Cause). The wave is inconclusive with the error as each check's evidence and an `Analysis
    Inconclusive` event, recorded once (a retried step records nothing twice); a person decides at the
    approval gate. A verdict recorded before the failure stands (a fail still halts); never a pass by itself."""
    state = {k: v for k, v in event.items() if k not in GATE_KEYS}
    upgrade_id, wave = int(state["upgradeId"]), int(state["lastWave"]["wave"])
    error = failure_evidence(event.get("analysisFailure"))
    reason = f"the analysis step failed: {error['error']}: {error['cause']}"
    names = [str(c.get("name")) for c in (state.get("analysis") or {}).get("checks", []) if isinstance(c, dict)]
    checks = [{"check": name, "verdict": "inconclusive", "rule": "a gate step that failed decides nothing",
               "reason": reason, "evidence": error} for name in names]  # fmt: skip
    recorded = record_verdict(db, upgrade_id, wave, "inconclusive", reason, checks)
    state["analysisVerdict"] = {"wave": wave, "verdict": recorded}
    if recorded == "fail":
        stored = next((v for v in repo.verdicts(upgrade_id) if v["wave"] == wave), None)
        runs.halt(upgrade_id, f"{HALT_PREFIX}wave {wave + 1} failed: {stored['reason'] if stored else reason}")
    state["decision"] = "halt" if recorded == "fail" or _stopped(state, runs) else "await_continue"
    return state


def failure_evidence(failure: Any) -> dict[str, str]:
    """The Catch's `{"Error", "Cause"}` as evidence: the error's name and message (a Lambda's Cause is its error
    envelope: the stack trace is left out), bounded."""
    found = failure if isinstance(failure, Mapping) else {}
    cause: Any = found.get("Cause") or ""
    try:
        envelope = json.loads(cause) if isinstance(cause, str) else cause
    except ValueError:
        envelope = None
    if isinstance(envelope, Mapping):
        cause = envelope.get("errorMessage") or envelope.get("Cause") or ""
    return {"error": str(found.get("Error") or "unknown")[:MAX_EVIDENCE_CHARS],
            "cause": str(cause or "no cause given")[:MAX_EVIDENCE_CHARS]}  # fmt: skip


def _measurement(row: Mapping[str, Any]) -> Measurement:
    return Measurement(row["check_name"], row["customer_id"], row["cohort"], row["query"], row["measured_at"],
                       value=row["value"], error=row["error"])  # fmt: skip
