"""Metrics, derived from the lifecycle events as they are published (one source for every number).

AWS: CloudWatch embedded metric format through Powertools Metrics, written by the publisher. The local
stack turns the same observations into Prometheus metrics (`upgradectl.local.prometheus`).
Dimensions stay low-cardinality (component, strategy, outcome); customer and upgrade ids travel as
metadata only (searchable in Logs Insights, never a metric dimension).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from upgrader.contract.strategies import strategy_names
from upgrader.infra.components import component_names
from upgrader.infra.db import Database
from upgrader.infra.vocabulary import FINAL_UPGRADE_STATUSES
from upgrader.notifications import events
from upgrader.notifications.publisher import OutboxEvent

NAMESPACE = "CustomerUpgrades"

CUSTOMERS_BY_OUTCOME = "CustomersByOutcome"
HELM_DURATION = "HelmDuration"
BUDGET_CONSUMED = "FailureBudgetConsumed"
GATE_WAIT = "GateWaitTime"
RECONCILIATIONS = "Reconciliations"
UPGRADES_BY_OUTCOME = "UpgradesByOutcome"
UPGRADES_HALTED = "UpgradesHalted"
RUNS_WITHOUT_PROGRESS = "RunsWithoutProgress"
EVENTS_PUBLISHED = "EventsPublished"

# Every CloudWatch metric the code emits, with its unit (the dashboards test reads this).
EMF_METRICS: dict[str, str] = {
    CUSTOMERS_BY_OUTCOME: "Count",
    HELM_DURATION: "Seconds",
    BUDGET_CONSUMED: "Percent",
    GATE_WAIT: "Seconds",
    RECONCILIATIONS: "Count",
    UPGRADES_BY_OUTCOME: "Count",
    UPGRADES_HALTED: "Count",
    RUNS_WITHOUT_PROGRESS: "Count",
    EVENTS_PUBLISHED: "Count",
}

# The dimension sets each metric is emitted with (besides `service`); () = fleet-wide.
EMF_DIMENSIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    CUSTOMERS_BY_OUTCOME: (("component", "strategy", "outcome"),),
    HELM_DURATION: (("component", "strategy"),),
    BUDGET_CONSUMED: (("component", "strategy"), ()),
    GATE_WAIT: (("component", "strategy"),),
    RECONCILIATIONS: (("component",), ()),
    UPGRADES_BY_OUTCOME: (("component", "strategy", "outcome"),),
    UPGRADES_HALTED: (("component",), ()),
    RUNS_WITHOUT_PROGRESS: (("component",), ()),
    EVENTS_PUBLISHED: (("detailType",),),
}

_CUSTOMER_OUTCOMES = {
    events.CUSTOMER_UPGRADED: "completed",
    events.CUSTOMER_FAILED: "failed",
    events.CUSTOMER_ROLLED_BACK: "rolled_back",
    events.CUSTOMER_ROLLBACK_FAILED: "rollback_failed",
}


# The `strategy` dimension of a rollback run's customers (every other observation carries the upgrade's).
ROLLBACK_STRATEGY = "rollback"
# How an upgrade run ends (`UpgradeRepository.finalize_upgrade`): the final statuses but a whole-upgrade
# rollback's, which a rollback run sets (Rollback Finished, not counted as an upgrade's outcome).
UPGRADE_OUTCOMES = tuple(s for s in FINAL_UPGRADE_STATUSES if s not in ("rolled_back", "rollback_incomplete"))


def label_sets(name: str) -> list[dict[str, str]]:
    """Every dimension set `observations` can give the metric `name` for a known component: the series a
    dashboard may query, so a scrape can show each of them from the start (at 0), before its first event."""
    components, strategies = component_names(), strategy_names()
    by_component = [{"component": c} for c in components]
    by_strategy = [{"component": c, "strategy": s} for c in components for s in strategies]
    if name == CUSTOMERS_BY_OUTCOME:
        return [
            {"component": c, "strategy": s, "outcome": _CUSTOMER_OUTCOMES[detail_type]}
            for c in components
            for operation, outcomes in events.OUTCOME_TYPES.items()
            for s in (strategies if operation == "upgrade" else (ROLLBACK_STRATEGY,))
            for detail_type in outcomes.values()
        ]
    if name == HELM_DURATION:
        return [*by_strategy, *({"component": c, "strategy": ROLLBACK_STRATEGY} for c in components)]
    if name == UPGRADES_BY_OUTCOME:
        return [{**dims, "outcome": outcome} for dims in by_strategy for outcome in UPGRADE_OUTCOMES]
    if name in (BUDGET_CONSUMED, GATE_WAIT):
        return by_strategy
    if name in (RECONCILIATIONS, UPGRADES_HALTED, RUNS_WITHOUT_PROGRESS):
        return by_component
    if name == EVENTS_PUBLISHED:
        return [{"detailType": detail_type} for detail_type in events.DETAIL_TYPES]
    raise KeyError(name)


@dataclass(frozen=True)
class Observation:
    name: str
    value: float
    dimensions: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return EMF_METRICS[self.name]


def observations(event: OutboxEvent) -> list[Observation]:
    """What one published event says in numbers."""
    detail: dict[str, Any] = event.detail
    upgrade = detail.get("upgrade") or {}
    customer = detail.get("customer") or {}
    component = str(event.component or upgrade.get("component") or "unknown")
    strategy = str(upgrade.get("strategy") or "none")
    base = {"component": component, "strategy": strategy}
    meta: dict[str, Any] = {"upgradeId": upgrade.get("upgradeId"), "eventId": str(event.id)}
    if customer:
        meta["customerId"] = customer.get("customerId")
    found: list[Observation] = [Observation(EVENTS_PUBLISHED, 1, {"detailType": event.detail_type}, meta)]
    kind = event.detail_type
    if kind in _CUSTOMER_OUTCOMES:
        strategy = strategy if customer.get("operation") == "upgrade" else ROLLBACK_STRATEGY
        dims = {"component": component, "strategy": strategy}
        found.append(Observation(CUSTOMERS_BY_OUTCOME, 1, {**dims, "outcome": _CUSTOMER_OUTCOMES[kind]}, meta))
        if customer.get("durationSeconds") is not None:
            found.append(Observation(HELM_DURATION, float(customer["durationSeconds"]), dims, meta))
    elif kind == events.WAVE_FINISHED:
        budget = (detail.get("wave") or {}).get("budget")
        if budget:
            found.append(Observation(BUDGET_CONSUMED, round(100 * float(budget["consumed"]), 2), base, meta))
    elif kind == events.GATE_CONTINUED:
        waited = (detail.get("gate") or {}).get("waitedSeconds")
        if waited is not None:
            found.append(Observation(GATE_WAIT, float(waited), base, meta))
    elif kind == events.RUN_RECONCILED:
        found.append(Observation(RECONCILIATIONS, 1, {"component": component}, meta))
    elif kind == events.UPGRADE_FINISHED:
        found.append(Observation(UPGRADES_BY_OUTCOME, 1, {**base, "outcome": str(upgrade.get("status"))}, meta))
    elif kind == events.UPGRADE_HALTED:
        found.append(Observation(UPGRADES_HALTED, 1, {"component": component}, meta))
    return found


# Alarms need one series over the whole fleet: these metrics are also emitted without dimensions.
FLEET_WIDE = (BUDGET_CONSUMED, UPGRADES_HALTED, RECONCILIATIONS)


def emit_emf(observed: Iterable[Observation], *, service: str) -> None:
    """Write each observation as one EMF record (stdout; the Lambda's log group turns it into metrics)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    for item in observed:
        sets = [item.dimensions] + ([{}] if item.name in FLEET_WIDE else [])
        for dims in sets:
            with single_metric(name=item.name, unit=MetricUnit(item.unit), value=item.value, namespace=NAMESPACE,
                               default_dimensions={"service": service, **dims}) as metric:  # fmt: skip
                for key, value in item.metadata.items():
                    if value is not None:
                        metric.add_metadata(key=key, value=value)


def runs_without_progress(db: Database, minutes: int) -> dict[str, int]:
    """Running upgrade runs, per component, where no customer row changed for `minutes`, no gate is open
    (a canary waiting for its go-ahead is not stuck) and the run does not wait for its customers'
    maintenance windows (WaitForWindows holds its token: waiting until Saturday is not stuck either)."""
    with db.transaction() as cur:
        cur.execute(
            """
            SELECT u.component, count(*) AS n
              FROM upgrade_runs r JOIN system_upgrades u ON u.id = r.upgrade_id
             WHERE r.status = 'running' AND u.gate IS NULL AND r.window_token IS NULL
               AND GREATEST(r.updated_at, u.updated_at,
                            (SELECT max(l.updated_at) FROM customer_upgrade_logs l WHERE l.run_name = r.run_name))
                   < NOW() - make_interval(mins => %s::int)
             GROUP BY u.component
            """,
            (minutes,),
        )
        return {str(r["component"]): int(r["n"]) for r in cur.fetchall()}
