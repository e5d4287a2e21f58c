"""Every Grafana panel (dashboards/) and every CloudWatch dashboard widget and alarm (template.yaml) queries a
metric the code emits, with dimensions it is emitted with."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from upgrader import factory
from upgrader.notifications import metrics

from tests.api.helpers import deploy
from tests.support.template import load_template
from upgradectl.local import prometheus

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def _panels(name: str) -> list[dict[str, Any]]:
    return json.loads((DASHBOARDS / name).read_text())["panels"]


def _scraped_families(make_customers: Any, sql: Any) -> set[str]:
    """What a real scrape of the local /metrics contains after an upgrade's events were published."""
    local = prometheus.LocalMetrics(factory.database)
    make_customers(2)
    started = deploy(strategy="all")
    uid, name = int(started["upgradeId"]), started["jobId"]
    runs = factory.runs()
    runs.start_run(uid, name, "upgrade")
    for row in sql("SELECT id FROM customer_upgrade_logs"):
        runs.claim_customer(row["id"])
        runs.finish_customer(row["id"], "completed", "ok", None)
    runs.close_unfinished(name, 0, "x")
    runs.finalize_upgrade(uid, name, None)
    factory.outbox().publish_batch([_Taken()], limit=100, on_sent=local.observe)
    _, body = local.render()
    return {family.name for family in text_string_to_metric_families(body.decode())}


class _Taken:
    name = "test"
    batch_size = 100

    def send(self, events: Any) -> list[str | None]:
        return [None] * len(events)


def test_every_prometheus_panel_queries_a_metric_the_local_stack_exposes(make_customers, fake_workflow, sql):
    families = _scraped_families(make_customers, sql)
    # every family the code declares is in a real scrape (counters appear without _total in the parser)
    declared = {re.sub(r"(_total|_bucket|_sum|_count)$", "", s) for s in prometheus.exposed_series()}
    assert declared <= families, declared - families
    for panel in _panels("prometheus.json"):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\bupgrader_[a-z_]+", target["expr"]))
            assert used, (panel["title"], target["expr"])
            assert used <= prometheus.exposed_series(), (panel["title"], used - prometheus.exposed_series())


def _dimension_set(dimensions: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in dimensions if k != "service"))


def _allowed(metric: str) -> set[tuple[str, ...]]:
    return {tuple(sorted(d)) for d in metrics.EMF_DIMENSIONS[metric]}


def test_every_cloudwatch_panel_queries_an_emitted_metric_with_its_dimensions():
    for panel in _panels("cloudwatch.json"):
        for target in panel["targets"]:
            assert target["namespace"] == metrics.NAMESPACE, panel["title"]
            assert target["metricName"] in metrics.EMF_METRICS, panel["title"]
            assert _dimension_set(target["dimensions"]) in _allowed(target["metricName"]), panel["title"]
    assert set(metrics.EMF_DIMENSIONS) == set(metrics.EMF_METRICS)


def test_the_templates_dashboard_and_alarms_use_emitted_metrics():
    resources = load_template()["Resources"]
    alarms = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert {"HaltedUpgradeAlarm", "FailureBudgetAlarm", "NoProgressAlarm"} <= set(alarms)
    for name, alarm in alarms.items():
        assert alarm["Namespace"] == metrics.NAMESPACE and alarm["MetricName"] in metrics.EMF_METRICS, name
        dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        assert _dimension_set(dims) in _allowed(alarm["MetricName"]), name
    body = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]  # the body is JSON
    used: set[str] = set()
    for widget in widgets:
        for line in widget["properties"].get("metrics", []):
            if line and line[0] == metrics.NAMESPACE:
                used.add(line[1])
                assert _dimension_set(dict(zip(line[2::2], line[3::2], strict=True))) in _allowed(line[1])
            for item in line:
                if isinstance(item, dict) and "expression" in item:
                    used.update(re.findall(r'MetricName="(\w+)"', item["expression"]))
    assert len(used) >= 6 and used <= set(metrics.EMF_METRICS), used
