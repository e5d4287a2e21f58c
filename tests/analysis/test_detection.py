"""The issue's figures on the simulated workloads (no Prometheus: the same counters it would scrape):
a bad version raising the error rate from 0.5 % to 3 % on a 5-customer canary of 50 is caught, and a good
version through 20 canaries raises no false alarm, with the default confidence and a 25 % tolerance."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.judgement import judge
from upgrader.analysis.measurements import Cohort, Measurement

from upgradectl.local.workload_metrics import Workload, WorkloadMetrics

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FLEET, CANARY = 50, 5


def error_rate_check(tolerance: float) -> AnalysisCheck:
    return AnalysisCheck.model_validate({
        "name": "error-rate", "provider": "prometheus",
        "query": 'sum(rate(app_errors_total{customer="{{customerId}}"}[{{since}}]))',
        "judgement": {"kind": "comparison", "toleratedDegradation": tolerance, "confidence": 0.95},
    })  # fmt: skip


def canary(seed: int, new_version: str, tolerance: float, window_seconds: float = 300.0) -> str:
    """Upgrade the canary wave, serve `window_seconds` of traffic, judge the error ratio: the verdict."""
    versions = {f"cust_{i:03d}": "v1.0.0" for i in range(FLEET)}

    def running() -> list[Workload]:
        return [Workload(c, f"customer-{c}", "api", v) for c, v in versions.items()]

    metrics = WorkloadMetrics(running, seed=seed, clock=lambda: 0.0)
    metrics.advance(600)  # before the upgrade
    for customer in list(versions)[:CANARY]:
        versions[customer] = new_version
    before = {(w.customer, w.version): (s.requests, s.errors) for w, s in metrics._series.items()}
    metrics.advance(window_seconds)
    measurements = []
    for w, s in metrics._series.items():
        if w.version != versions[w.customer]:
            continue  # the series of a version no longer running
        requests, errors = before.get((w.customer, w.version), (0, 0))
        ratio = (s.errors - errors) / max(1, s.requests - requests)
        cohort: Cohort = "upgraded" if w.version == new_version else "control"
        measurements.append(Measurement("error-rate", w.customer, cohort, "q", AT, value=ratio))
    return judge(error_rate_check(tolerance), measurements).verdict


@pytest.mark.parametrize("window", [300.0, 60.0])
def test_a_bad_version_is_caught_by_every_one_of_20_canaries(window):
    verdicts = [canary(seed, "v1.1.0-bad", tolerance=0.25, window_seconds=window) for seed in range(20)]
    assert verdicts.count("fail") == 20, verdicts


def test_a_good_version_raises_no_false_alarm_in_20_canaries():
    verdicts = [canary(seed, "v1.1.0", tolerance=0.25) for seed in range(20)]
    assert verdicts.count("fail") == 0, verdicts
    assert verdicts.count("pass") == 20


def test_without_a_tolerance_the_false_alarm_rate_is_the_test_s_own_alpha():
    """What the tolerance buys: at 0 % tolerance a good version still fails about 1 canary in 20 (alpha =
    5 %), because customers differ and 5 canary customers are a small sample. Kept as a figure, bounded."""
    verdicts = [canary(seed, "v1.1.0", tolerance=0.0) for seed in range(40)]
    assert verdicts.count("fail") <= 6, verdicts
