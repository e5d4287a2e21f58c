"""Metric analysis in the API: the plan's one run of each query, and an upgrade's verdicts and measurements
(`GET /api/upgrades/{id}/analysis`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from upgrader.analysis.configured import PREVIEW_TIMEOUT_SECONDS, preview, providers_for
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.repository import AnalysisRepository
from upgrader.analysis.rounds import Customer, control_sample
from upgrader.analysis.spec import AnalysisSpec
from upgrader.contract.analysis_models import (
    AnalysisResponse,
    AnalysisState,
    CheckVerdict,
    MeasurementView,
    PlannedAnalysis,
    WaveAnalysis,
)
from upgrader.contract.models import iso
from upgrader.infra.errors import UpgradeNotFound
from upgrader.infra.settings import Settings


def planned_analysis(
    spec: AnalysisSpec | None, component: str, waves: Sequence[Sequence[Any]], settings: Settings,
    now: datetime | None = None,
) -> PlannedAnalysis | None:  # fmt: skip
    """Each check run once for the first canary customer and the control sample (the later waves' customers,
    still on the old version): the plan shows the values, or why there is none."""
    if spec is None:
        return None
    first = waves[0][0] if waves and waves[0] else None
    canary = Customer(first.customer_id, first.namespace, first.current_version or "") if first else None
    later = [Customer(t.customer_id, t.namespace, t.current_version or "") for wave in waves[1:] for t in wave]
    control = control_sample(0, later, spec.control_sample)
    measured = preview(
        spec,
        component,
        canary,
        control,
        providers_for(spec, settings, timeout=PREVIEW_TIMEOUT_SECONDS),
        now or datetime.now(UTC),
    )
    return PlannedAnalysis(
        on_pass=spec.on_pass,
        rounds=spec.rounds,
        interval_seconds=spec.interval_seconds,
        control_sample=spec.control_sample,
        measurements=[measurement_view(m) for m in measured],
    )


def measurement_view(m: Measurement, *, wave: int | None = None, round_index: int | None = None) -> MeasurementView:
    return MeasurementView(
        check=m.check, customer_id=m.customer_id, cohort=m.cohort, query=m.query, measured_at=iso(m.measured_at) or "",
        value=m.value, error=m.error, verdict=m.verdict, wave=wave, round=round_index,
    )  # fmt: skip


def get_analysis(upgrade_id: int, *, analysis: AnalysisRepository) -> AnalysisResponse:
    """The deploy's checks, each analysed wave's verdict (newest first) and the measurements (newest round
    first, bounded)."""
    parameters = analysis.parameters(upgrade_id)
    if parameters is None:
        raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
    checks = [str(c.get("name")) for c in (parameters.get("analysis") or {}).get("checks", [])]
    waves = [
        WaveAnalysis(wave=v["wave"], verdict=v["verdict"], reason=v["reason"], judged_at=iso(v["judged_at"]) or "",
                     checks=[CheckVerdict(**c) for c in v["checks"]])
        for v in analysis.verdicts(upgrade_id)
    ]  # fmt: skip
    measurements = [
        measurement_view(Measurement(r["check_name"], r["customer_id"], r["cohort"], r["query"], r["measured_at"],
                                     value=r["value"], error=r["error"], verdict=r["verdict"]),
                         wave=r["wave"], round_index=r["round"])
        for r in analysis.measurements(upgrade_id)
    ]  # fmt: skip
    return AnalysisResponse(upgrade_id=str(upgrade_id), checks=checks, waves=waves, measurements=measurements)


def analysis_state(upgrade_id: int, analysis: AnalysisRepository) -> AnalysisState | None:
    """The newest analysed wave's verdict, for the status."""
    newest = analysis.verdicts(upgrade_id, limit=1)
    if not newest:
        return None
    wave = int(newest[0]["wave"])
    return AnalysisState(wave=wave, verdict=newest[0]["verdict"], rollback=analysis.wave_rollback(upgrade_id, wave))
