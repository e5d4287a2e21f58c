"""Metric analysis in the API: the plan's one run of each query, and an upgrade's verdicts and measurements
(`GET /api/upgrades/{id}/analysis`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from upgrader.analysis.configured import preview, providers_for
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.rounds import Customer, control_sample
from upgrader.analysis.spec import AnalysisSpec
from upgrader.contract.analysis_models import MeasurementView, PlannedAnalysis
from upgrader.contract.models import iso
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
    measured = preview(spec, component, canary, control, providers_for(spec, settings), now or datetime.now(UTC))
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
