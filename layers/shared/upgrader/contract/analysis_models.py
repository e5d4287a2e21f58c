"""The API's views of metric analysis (docs/analysis.md): the plan's one run of each query, the gate's
verdicts and their measurements (`GET /api/upgrades/{id}/analysis`), the status' latest verdict."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from upgrader.analysis.spec import AnalysisSpec
from upgrader.contract.base import Model, StrictModel, Timestamp


class AnalysisOption(StrictModel):
    """The deploy request's `analysis` (DeployRequest derives from this, so the field is declared here)."""

    analysis: AnalysisSpec | None = Field(
        default=None,
        description="metric analysis after each gated wave (docs/analysis.md): the checks, measured on the wave's "
        "customers and on a control sample still on the old version; pass starts the next wave (onPass continue), "
        "fail halts (autoRollback rolls the wave back), inconclusive waits for /continue",
    )


class MeasurementView(Model):
    check: str
    customer_id: str
    cohort: Literal["upgraded", "control"]
    query: str = Field(description="the query as it ran, after templating")
    measured_at: Timestamp
    value: float | None = Field(description="null: no data, or the provider's error")
    error: str | None = None
    verdict: Literal["pass", "fail", "inconclusive"] | None = Field(
        default=None,
        description="this measurement's own verdict, stored with the wave's: its value against the conditions "
        "(threshold per customer; no value: inconclusive), the wave's verdict (threshold over the wave), or the "
        "verdict of the comparison it took part in (both cohorts); null: not judged yet (the plan, a wave still "
        "measured, a gate step that failed), or a control measurement of a threshold check (it takes no part)",
    )
    wave: int | None = None
    round: int | None = None


class PlannedAnalysis(Model):
    on_pass: Literal["continue", "await"]
    rounds: int = Field(description="rounds measured after each gated wave")
    interval_seconds: int = Field(description="the pause between two rounds")
    control_sample: int = Field(description="customers still on the old version measured as the control group")
    measurements: list[MeasurementView] = Field(
        description="each query run once now, for the first canary customer (rendered with the version it runs "
        "now) and the control sample: a query that answers nothing shows here before the deploy"
    )


class CheckVerdict(Model):
    check: str
    verdict: Literal["pass", "fail", "inconclusive"]
    rule: str
    reason: str
    evidence: dict[str, Any]


class WaveAnalysis(Model):
    wave: int
    verdict: Literal["pass", "fail", "inconclusive"]
    reason: str
    judged_at: Timestamp
    checks: list[CheckVerdict]


class AnalysisResponse(Model):
    upgrade_id: str
    checks: list[str] = Field(description="the deploy's checks, by name (empty: the deploy asked for no analysis)")
    waves: list[WaveAnalysis] = Field(description="the verdict of each gated wave, newest first")
    measurements: list[MeasurementView] = Field(description="newest round first, at most 500")


class AnalysisState(Model):
    wave: int
    verdict: Literal["pass", "fail", "inconclusive"]
    rollback: str | None = Field(
        default=None,
        description="a failed wave rolled back by itself (autoRollback): its rollback run's status (running, "
        "completed, incomplete, stopped); only that wave's customers, the waves that passed keep the new version",
    )


class AnalysisStatus(Model):
    """The status' part about the analysis (StatusResponse derives from this)."""

    analysis: AnalysisState | None = Field(
        default=None, description="the newest analysed wave's verdict (GET .../analysis has the evidence)"
    )
