"""Every labelled Prometheus series the product can emit is in the first scrape, at 0; the gauges always have
a sample; and the docs (docs/howto/dashboards.md) list exactly the metrics the registry exposes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from upgrader import factory
from upgrader.contract.strategies import strategy_names
from upgrader.infra.components import component_names
from upgrader.notifications import events, metrics
from upgrader.notifications.publisher import OutboxEvent

from upgradectl.local import prometheus

STRATEGIES = strategy_names()

DASHBOARDS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "howto" / "dashboards.md"


def _scrape(local: prometheus.LocalMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(local.render()[1].decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_every_labelled_series_exists_at_zero_from_start_up(env):
    """A dashboard's increase()/rate() counts an event only when its series existed before it.

    Breakage tried: no pre-created series in LocalMetrics (the customers/upgrades/halts/reconciliations/events
    series and histograms are absent), and rollback left out of label_sets: both fail here."""
    scraped = _scrape(prometheus.LocalMetrics(factory.database))
    customers = scraped["upgrader_customers_total"]
    for component in component_names():
        for strategy in ("all", "canary", "batch", "progressive"):
            for outcome in ("completed", "failed", "rolled_back"):
                key = (("component", component), ("outcome", outcome), ("strategy", strategy))
                assert customers[key] == 0, key
        for outcome in ("rolled_back", "rollback_failed"):
            assert customers[(("component", component), ("outcome", outcome), ("strategy", "rollback"))] == 0
        for outcome in ("completed", "completed_with_failures", "failed", "halted", "aborted"):
            for strategy in STRATEGIES:
                key = (("component", component), ("outcome", outcome), ("strategy", strategy))
                assert scraped["upgrader_upgrades_total"][key] == 0, key
        assert scraped["upgrader_upgrades_halted_total"][(("component", component),)] == 0
        assert scraped["upgrader_reconciliations_total"][(("component", component),)] == 0
        assert scraped["upgrader_runs_without_progress"][(("component", component),)] == 0
        for status in ("pending", "in_progress", "awaiting_continue"):
            assert scraped["upgrader_upgrades_active"][(("component", component), ("status", status))] == 0
        for strategy in STRATEGIES:
            dims = (("component", component), ("strategy", strategy))
            assert scraped["upgrader_failure_budget_consumed_ratio"][dims] == 0
            assert scraped["upgrader_gate_wait_seconds_count"][dims] == 0
            assert scraped["upgrader_helm_duration_seconds_count"][dims] == 0
        assert (
            scraped["upgrader_helm_duration_seconds_count"][(("component", component), ("strategy", "rollback"))] == 0
        )
    assert {dict(k)["detail_type"] for k in scraped["upgrader_events_published_total"]} == set(events.DETAIL_TYPES)
    assert scraped["upgrader_events_unsent"] == {(): 0}


def _event(detail_type: str, **detail: Any) -> OutboxEvent:
    from datetime import datetime

    return OutboxEvent(1, "k", detail_type, "info", "api", 1, None, detail, datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("event", "operation"),
    [
        (events.CUSTOMER_UPGRADED, "upgrade"),
        (events.CUSTOMER_FAILED, "upgrade"),
        (events.CUSTOMER_ROLLED_BACK, "upgrade"),
        (events.CUSTOMER_ROLLED_BACK, "rollback"),
        (events.CUSTOMER_ROLLBACK_FAILED, "rollback"),
    ],
)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_what_an_event_observes_is_one_of_the_series_made_at_start_up(event, operation, strategy):
    """label_sets (the series made at start-up) covers what observations() derives from real event shapes.

    Breakage tried: label_sets giving customers only the upgrade strategies (no `rollback`): the rollback
    cases fail here."""
    upgrade = {"component": "api", "strategy": strategy, "status": "completed"}
    observed = metrics.observations(
        _event(event, upgrade=upgrade, customer={"operation": operation, "durationSeconds": 1.5})
    )
    observed += metrics.observations(_event(events.UPGRADE_FINISHED, upgrade=upgrade))
    observed += metrics.observations(_event(events.GATE_CONTINUED, upgrade=upgrade, gate={"waitedSeconds": 3}))
    observed += metrics.observations(_event(events.WAVE_FINISHED, upgrade=upgrade, wave={"budget": {"consumed": 0.5}}))
    for item in observed:
        assert item.dimensions in metrics.label_sets(item.name), (item.name, item.dimensions)


def _documented_metrics() -> set[str]:
    section = (
        DASHBOARDS_PAGE.read_text().split("# Metrics and dashboards", 1)[1].split("\n## ", 1)[0].split("\n# ", 1)[0]
    )
    prometheus_part = section.split("- **Prometheus**", 1)[1].split("\n- **", 1)[0]
    return set(re.findall(r"`(upgrader_[a-z_]+)`", prometheus_part))


def test_the_docs_list_every_metric_of_the_registry(env):
    """Breakage tried: dropping `upgrader_reconciliations_total` from the docs' list (the README's, as it was: three
    were missing) fails here; so does a family added to the registry without its line in docs/howto/dashboards.md."""
    families = {family.name for family in prometheus.LocalMetrics(factory.database).registry.collect()}
    # counters are named without `_total` in the registry; people (and the docs) write the sample name
    registry_names = {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in prometheus.LocalMetrics(factory.database).registry.collect()
    }
    assert len(families) == len(registry_names) >= 12
    assert _documented_metrics() == registry_names
