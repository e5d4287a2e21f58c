"""One round of an analysis: every check measured for every customer of both cohorts, a provider that did
not answer tried again (bounded), and the control group chosen.

This is what the state machine's MeasureRound task will call once per round (docs/analysis.md). A
measurement still without an answer after its tries stays in the round with its error: the judgement
counts it as inconclusive, never as a pass."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.providers import MetricProvider, Target
from upgrader.analysis.templating import TemplateValues

MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    namespace: str
    version: str  # the version of the component it runs now


def control_sample(upgrade_id: int, candidates: Iterable[Customer], size: int) -> list[Customer]:
    """Up to `size` customers still on the old version, the same ones for every round and retry of an upgrade
    (ordered by a hash of the upgrade and the customer id: no customer is always in, or always out, of control
    groups across upgrades)."""
    if size < 0:
        raise ValueError("a control sample's size is 0 or more")

    def rank(customer: Customer) -> str:
        return hashlib.sha256(f"{upgrade_id}:{customer.customer_id}".encode()).hexdigest()

    return sorted(candidates, key=rank)[:size]


def targets(component: str, upgraded: Sequence[Customer], control: Sequence[Customer], since: datetime,
            now: datetime) -> list[Target]:  # fmt: skip
    """Both cohorts over the same window: `since` (the end of the wave) to `now`."""

    def target(customer: Customer, cohort: str) -> Target:
        values = TemplateValues(customer.customer_id, customer.namespace, component, customer.version, since, now)
        return Target("upgraded" if cohort == "upgraded" else "control", values)

    return [*(target(c, "upgraded") for c in upgraded), *(target(c, "control") for c in control)]


def measure_round(
    checks: Sequence[AnalysisCheck],
    round_targets: Sequence[Target],
    providers: Mapping[str, MetricProvider],
    *,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Measurement]:
    """Every check for every target; a retryable miss is measured again, up to `attempts` times in all, with
    a doubling pause. A check whose provider is not configured is a measurement with that error."""
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise ValueError(f"attempts is 1..{MAX_ATTEMPTS}")
    found: list[Measurement] = []
    for check in checks:
        provider = providers.get(check.provider)
        for target in round_targets:
            if provider is None:
                found.append(Measurement(check.name, target.customer_id, target.cohort, str(check.query),
                                         target.values.now, error=f"no {check.provider} provider configured"))  # fmt: skip
                continue
            measured = provider.measure(check, target)
            pause = backoff_seconds
            for _ in range(attempts - 1):
                if not measured.retryable:
                    break
                sleep(pause)
                pause *= 2
                measured = provider.measure(check, target)
            found.append(measured)
    return found
