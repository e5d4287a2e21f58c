"""`GET /metrics` of the local stack, in the Prometheus text format (prometheus_client).

Counters and histograms follow the published lifecycle events (the same `upgrader.notifications.metrics.observations`
that become CloudWatch EMF metrics in AWS); gauges are read from PostgreSQL at each scrape (fleet
versions, active upgrades, runs without progress, events not yet published).

Every labelled series the product can emit (`upgrader.notifications.metrics.label_sets`) exists from start-up at 0:
`increase()` and `rate()` only count what happens after a series' first sample, so a series born at its
first event would never count that event. For the same reason the gauges always have their series (0
when nothing is active or stuck), so a panel reads 0 instead of "no data".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from upgrader.infra.components import component_names
from upgrader.infra.db import Database
from upgrader.infra.vocabulary import ACTIVE_UPGRADE_STATUSES
from upgrader.notifications import metrics
from upgrader.notifications.publisher import OutboxEvent

disable_created_metrics()  # no `_created` series: counters and histograms as Prometheus users expect them

# Every metric name /metrics exposes (families; counters get a `_total` sample, histograms `_bucket`,
# `_sum`, `_count`). The dashboards test checks each panel queries one of them.
CUSTOMERS = "upgrader_customers"
UPGRADES = "upgrader_upgrades"
HALTED = "upgrader_upgrades_halted"
RECONCILIATIONS = "upgrader_reconciliations"
EVENTS = "upgrader_events_published"
HELM_SECONDS = "upgrader_helm_duration_seconds"
GATE_SECONDS = "upgrader_gate_wait_seconds"
BUDGET = "upgrader_failure_budget_consumed_ratio"
FLEET = "upgrader_fleet_customers"
ACTIVE = "upgrader_upgrades_active"
NO_PROGRESS = "upgrader_runs_without_progress"
UNSENT = "upgrader_events_unsent"


def exposed_series() -> set[str]:
    """The sample names a scrape can contain."""
    counters = {f"{n}_total" for n in (CUSTOMERS, UPGRADES, HALTED, RECONCILIATIONS, EVENTS)}
    histograms = {f"{n}{s}" for n in (HELM_SECONDS, GATE_SECONDS) for s in ("_bucket", "_sum", "_count")}
    return counters | histograms | {BUDGET, FLEET, ACTIVE, NO_PROGRESS, UNSENT}


class _DatabaseGauges(Collector):
    def __init__(self, db: Callable[[], Database], no_progress_minutes: int) -> None:
        self._db = db
        self._minutes = no_progress_minutes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        db = self._db()
        fleet = GaugeMetricFamily(FLEET, "Customers running each version of each component (the inventory)",
                                  labels=["component", "version"])  # fmt: skip
        active = GaugeMetricFamily(ACTIVE, "Upgrades pending, running or awaiting continue",
                                   labels=["component", "status"])  # fmt: skip
        with db.transaction() as cur:
            cur.execute(
                """
                SELECT v.component, v.version, count(*) AS n FROM customer_component_versions v
                  JOIN customers c ON c.id = v.customer_id WHERE c.status <> 'decommissioned'
                 GROUP BY v.component, v.version ORDER BY 1, 2
                """
            )
            for row in cur.fetchall():
                fleet.add_metric([row["component"], row["version"]], int(row["n"]))
            cur.execute(
                "SELECT component, status, count(*) AS n FROM system_upgrades WHERE status = ANY(%s) GROUP BY 1, 2",
                (list(ACTIVE_UPGRADE_STATUSES),),
            )
            counts = {(row["component"], row["status"]): int(row["n"]) for row in cur.fetchall()}
            for key in sorted({*((c, s) for c in component_names() for s in ACTIVE_UPGRADE_STATUSES), *counts}):
                active.add_metric(list(key), counts.get(key, 0))
            cur.execute("SELECT count(*) AS n FROM event_outbox WHERE sent_at IS NULL")
            unsent_count = int((cur.fetchone() or {"n": 0})["n"])
        stuck = GaugeMetricFamily(NO_PROGRESS, f"Running upgrades with no customer change for {self._minutes} min",
                                  labels=["component"])  # fmt: skip
        without_progress = metrics.runs_without_progress(db, self._minutes)
        for component in sorted({*component_names(), *without_progress}):
            stuck.add_metric([component], without_progress.get(component, 0))
        unsent = GaugeMetricFamily(UNSENT, "Lifecycle events recorded and not yet published")
        unsent.add_metric([], unsent_count)
        yield from (fleet, active, stuck, unsent)


class LocalMetrics:
    """The registry behind GET /metrics; `observe` is the local publisher's on_sent hook."""

    def __init__(self, db: Callable[[], Database], *, no_progress_minutes: int = 30) -> None:
        self.registry = CollectorRegistry()
        outcome = ["component", "strategy", "outcome"]
        self._counters: dict[str, Any] = {
            metrics.CUSTOMERS_BY_OUTCOME: Counter(CUSTOMERS, "Customers by outcome", outcome, registry=self.registry),
            metrics.UPGRADES_BY_OUTCOME: Counter(UPGRADES, "Upgrades by final status", outcome, registry=self.registry),
            metrics.UPGRADES_HALTED: Counter(
                HALTED, "Upgrades halted (failure budget)", ["component"], registry=self.registry
            ),  # fmt: skip
            metrics.RECONCILIATIONS: Counter(
                RECONCILIATIONS, "Runs ended by the reconciler", ["component"], registry=self.registry
            ),  # fmt: skip
            metrics.EVENTS_PUBLISHED: Counter(
                EVENTS, "Lifecycle events published", ["detail_type"], registry=self.registry
            ),  # fmt: skip
        }
        self._histograms: dict[str, Any] = {
            metrics.HELM_DURATION: Histogram(
                HELM_SECONDS,
                "A customer's helm operation, claim to recorded result",
                ["component", "strategy"],
                buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
                registry=self.registry,
            ),  # fmt: skip
            metrics.GATE_WAIT: Histogram(
                GATE_SECONDS,
                "Time a canary waited at its gate",
                ["component", "strategy"],
                buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
                registry=self.registry,
            ),  # fmt: skip
        }
        self._budget = Gauge(BUDGET, "Failure budget consumed by the last finished wave (1 = halted)",
                             ["component", "strategy"], registry=self.registry)  # fmt: skip
        self.registry.register(_DatabaseGauges(db, no_progress_minutes))
        for name, family in [
            *self._counters.items(),
            *self._histograms.items(),
            (metrics.BUDGET_CONSUMED, self._budget),
        ]:
            for dimensions in metrics.label_sets(name):
                family.labels(**_labels(dimensions))  # the series, at 0

    def observe(self, sent: list[OutboxEvent]) -> None:
        for event in sent:
            for item in metrics.observations(event):
                labels = _labels(item.dimensions)
                if item.name in self._counters:
                    self._counters[item.name].labels(**labels).inc(item.value)
                elif item.name in self._histograms:
                    self._histograms[item.name].labels(**labels).observe(item.value)
                elif item.name == metrics.BUDGET_CONSUMED:
                    self._budget.labels(**labels).set(item.value / 100)

    def render(self) -> tuple[str, bytes]:
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)


def _labels(dimensions: dict[str, str]) -> dict[str, str]:
    """An observation's dimensions as Prometheus labels (snake_case names)."""
    return {("detail_type" if k == "detailType" else k): v for k, v in dimensions.items()}
