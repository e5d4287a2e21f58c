"""The providers a deployment is configured with (settings), and the plan's one run of each query."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from upgrader.analysis.measurements import Measurement
from upgrader.analysis.providers import MetricProvider
from upgrader.analysis.rounds import Customer, measure_round, targets
from upgrader.analysis.spec import AnalysisSpec
from upgrader.infra.settings import Settings


def providers_for(spec: AnalysisSpec, settings: Settings) -> dict[str, MetricProvider]:
    """The providers the checks name, as configured; one not configured is left out (its checks measure
    nothing: inconclusive, never a pass)."""
    wanted = {check.provider for check in spec.checks}
    found: dict[str, MetricProvider] = {}
    if "prometheus" in wanted and settings.analysis_prometheus_url:
        from upgrader.analysis.providers.prometheus import PrometheusProvider, sigv4_signer

        signer = sigv4_signer(settings.aws_region or "us-east-1") if settings.analysis_prometheus_sigv4 else None
        found["prometheus"] = PrometheusProvider(settings.analysis_prometheus_url, signer=signer)
    if "cloudwatch" in wanted:
        from upgrader.analysis.providers.cloudwatch import CloudWatchProvider, cloudwatch_client

        found["cloudwatch"] = CloudWatchProvider(cloudwatch_client(settings.aws_region))
    if "http" in wanted:
        from upgrader.analysis.providers.http import HttpProvider

        found["http"] = HttpProvider()
    return found


def preview(
    spec: AnalysisSpec,
    component: str,
    canary: Customer | None,
    control: Sequence[Customer],
    providers: Mapping[str, MetricProvider],
    now: datetime,
) -> list[Measurement]:
    """Each check once, for the first canary customer and the control sample, over the last interval: what
    the plan shows. No retries (a plan answers at once); a provider that did not answer shows its error."""
    since = now - timedelta(seconds=spec.interval_seconds)
    upgraded = [canary] if canary is not None else []
    return measure_round(spec.checks, targets(component, upgraded, control, since, now), providers, attempts=1)
