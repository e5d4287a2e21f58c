"""The publish_events Lambda: drains the outbox to the (moto) bus and writes CloudWatch EMF metrics, with
low-cardinality dimensions (customer ids only as metadata). The EMF lines are parsed from its output."""

from __future__ import annotations

import json
from typing import Any

from upgrader import factory
from upgrader.notifications import metrics

from tests.api.helpers import deploy
from tests.support.functions import invoke


def _emf(out: str) -> list[dict[str, Any]]:
    records = []
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "_aws" in record:
            records.append(record)
    return records


def _value(record: dict[str, Any], name: str) -> float:
    value = record[name]
    return float(value[0] if isinstance(value, list) else value)


def _metric(record: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    directive = record["_aws"]["CloudWatchMetrics"][0]
    return directive["Metrics"][0]["Name"], tuple(sorted(directive["Dimensions"][0]))


def test_published_events_become_emf_metrics(make_customers, fake_workflow, sql, bus, capsys):
    make_customers(3)
    started = deploy(strategy="batch", batchSize=3)
    uid, name = int(started["upgradeId"]), started["jobId"]
    runs = factory.runs()
    runs.start_run(uid, name, "upgrade")
    rows = {r["customer_id"]: r["id"] for r in sql("SELECT id, customer_id FROM customer_upgrade_logs")}
    for customer, status in (("cust_0001", "completed"), ("cust_0002", "completed"), ("cust_0003", "failed")):
        runs.claim_customer(rows[customer])
        runs.finish_customer(rows[customer], status, "out", None if status == "completed" else "helm failed")
    runs.close_unfinished(name, 0, "unrecorded")
    runs.finalize_upgrade(uid, name, None)
    capsys.readouterr()

    result = invoke("publish_events", {"source": "scheduler.publish", "drainSeconds": 0})

    records = _emf(capsys.readouterr().out)
    assert result["sent"] == len(sql("SELECT id FROM event_outbox")) and result["failed"] == 0
    assert len(bus.receive()) == result["sent"]
    found = {_metric(r) for r in records}
    assert (metrics.CUSTOMERS_BY_OUTCOME, ("component", "outcome", "service", "strategy")) in found
    assert (metrics.HELM_DURATION, ("component", "service", "strategy")) in found
    assert (metrics.BUDGET_CONSUMED, ("component", "service", "strategy")) in found
    assert (metrics.BUDGET_CONSUMED, ("service",)) in found  # fleet-wide, for the alarm
    assert (metrics.UPGRADES_HALTED, ("service",)) in found
    assert (metrics.UPGRADES_BY_OUTCOME, ("component", "outcome", "service", "strategy")) in found
    assert (metrics.RUNS_WITHOUT_PROGRESS, ("service",)) in found
    by_outcome = [r for r in records if _metric(r)[0] == metrics.CUSTOMERS_BY_OUTCOME]
    assert sorted((r["outcome"], _value(r, metrics.CUSTOMERS_BY_OUTCOME)) for r in by_outcome) == [
        ("completed", 1.0), ("completed", 1.0), ("failed", 1.0)]  # fmt: skip
    assert {r["component"] for r in by_outcome} == {"api"} and {r["strategy"] for r in by_outcome} == {"batch"}
    # customer ids travel as metadata, never as a dimension
    assert sorted(r["customerId"] for r in by_outcome) == ["cust_0001", "cust_0002", "cust_0003"]
    for record in records:
        dimensions = record["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
        assert "customerId" not in dimensions and "upgradeId" not in dimensions
        assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == metrics.NAMESPACE
    budget = [r for r in records if _metric(r) == (metrics.BUDGET_CONSUMED, ("component", "service", "strategy"))]
    assert _value(budget[0], metrics.BUDGET_CONSUMED) == 100.0  # 1 failure, none tolerated: the whole budget
    # every metric the code emits is declared (the dashboards are checked against the declaration)
    assert {name for name, _ in found} <= set(metrics.EMF_METRICS)
