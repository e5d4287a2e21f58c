"""The providers that measure a check for one customer: Prometheus (HTTP API), CloudWatch (GetMetricData,
DescribeAlarms), HTTP (a URL per customer, a JSON path).

Each answers a Measurement and never raises for what the outside system did: a timeout, a 5xx, an
answer that is not what was asked (not JSON, several series, no datapoint) is a measurement without a
value and with its `error`, which the judgement counts as inconclusive, never as a pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.measurements import Cohort, Measurement
from upgrader.analysis.templating import TemplateValues

MAX_TIMEOUT_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """One customer measured: its cohort, and the values its query is rendered with."""

    cohort: Cohort
    values: TemplateValues

    @property
    def customer_id(self) -> str:
        return self.values.customer_id


class MetricProvider(Protocol):
    def measure(self, check: AnalysisCheck, target: Target) -> Measurement:
        """One measurement of `check` for `target`, at `target.values.now`."""
        ...


def bounded_timeout(seconds: float) -> float:
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"a provider's timeout is 0 < t <= {MAX_TIMEOUT_SECONDS:g} s, got {seconds!r}")
    return seconds


def no_value(check: AnalysisCheck, target: Target, query: str, error: str, *, retryable: bool = False) -> Measurement:
    """A measurement without a value; `retryable`: the provider did not answer this time (worth another try)."""
    return Measurement(check.name, target.customer_id, target.cohort, query, target.values.now, error=error,
                       retryable=retryable)  # fmt: skip


def value(check: AnalysisCheck, target: Target, query: str, measured: float) -> Measurement:
    return Measurement(check.name, target.customer_id, target.cohort, query, target.values.now, value=measured)
