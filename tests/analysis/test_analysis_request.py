"""A deploy's `analysis` through the real API handlers: refused with a 422 naming the field at deploy and plan
time (nothing written), kept in the upgrade's parameters, and each query run once by the plan."""

from __future__ import annotations

import copy
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from upgrader import factory

from tests.api.test_plan import deploy, plan
from tests.support.database import snapshot

ERROR_RATE = ('sum(rate(app_errors_total{customer="{{customerId}}"}[{{since}}])) / '
              'sum(rate(app_requests_total{customer="{{customerId}}"}[{{since}}]))')  # fmt: skip
CHECK = {"name": "error-rate", "provider": "prometheus", "query": ERROR_RATE, "intervalSeconds": 5, "count": 2,
         "judgement": {"kind": "comparison", "toleratedDegradation": 0.25}}  # fmt: skip
REQUEST = {"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 20,
           "analysis": {"checks": [CHECK], "onPass": "continue", "controlSample": 3}}  # fmt: skip


def with_analysis(**changes: Any) -> dict[str, Any]:
    request = copy.deepcopy(REQUEST)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target: Any = request["analysis"]
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return request


BAD = [
    (with_analysis(checks__0__query="sum(rate(x[1m])"), "analysis.checks.0.query"),
    (with_analysis(checks__0__query='x{customer="{{tenant}}"}'), "analysis.checks.0.query"),
    (with_analysis(checks__0__provider="datadog"), "analysis.checks.0.provider"),
    (
        with_analysis(
            checks__0__successCondition={"op": "<", "value": 0.02},
            checks__0__failureCondition={"op": ">", "value": 0.01},
        ),
        "analysis.checks.0.failureCondition",
    ),
    (with_analysis(onPass="maybe"), "analysis.onPass"),
    (with_analysis(controlSample="20"), "analysis.controlSample"),
    (with_analysis(checks=[]), "analysis.checks"),
    (with_analysis(checks=[CHECK, CHECK]), "analysis.checks"),
    (with_analysis(checks__0__intervalSeconds=1), "analysis.checks.0.intervalSeconds"),
]


@pytest.mark.parametrize(("request_body", "field"), BAD)
def test_bad_analysis_is_refused_naming_the_field_at_deploy_and_plan_time_and_nothing_is_written(
    request_body, field, make_customers, fake_workflow, database_url
):
    make_customers(5)
    before = snapshot(database_url)
    for call in (lambda: deploy(request_body)[:2], lambda: plan(request_body)):
        code, answer = call()
        assert code == 422, answer
        assert field in [e["field"] for e in answer["errors"]], answer
    assert snapshot(database_url) == before
    assert fake_workflow.started == []


def test_the_analysis_is_kept_in_the_upgrades_parameters(make_customers, fake_workflow, repo):
    make_customers(5)
    code, started, _ = deploy(REQUEST)
    assert code == 202, started
    stored = repo.get_upgrade(int(started["upgradeId"])).parameters["analysis"]
    assert stored["onPass"] == "continue" and stored["controlSample"] == 3
    assert [c["name"] for c in stored["checks"]] == ["error-rate"]
    assert stored["checks"][0]["query"] == ERROR_RATE and stored["checks"][0]["judgement"]["kind"] == "comparison"


def test_the_plan_runs_each_query_once_for_the_canary_and_the_control_sample(
    make_customers, scripted_server, monkeypatch
):
    make_customers(5)
    scripted_server.answer("/api/v1/query", body={"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {}, "value": [0, "0.004"]}]}})  # fmt: skip
    monkeypatch.setenv("ANALYSIS_PROMETHEUS_URL", scripted_server.url)
    factory.reset()
    code, planned = plan(REQUEST)
    assert code == 200, planned
    analysis = planned["analysis"]
    assert (analysis["rounds"], analysis["intervalSeconds"], analysis["onPass"]) == (2, 5, "continue")
    canary = planned["waves"][0]["customers"][0]["customerId"]
    rows = analysis["measurements"]
    assert [(r["cohort"], r["customerId"]) for r in rows][0] == ("upgraded", canary)
    assert sorted(r["cohort"] for r in rows) == ["control"] * 3 + ["upgraded"]
    assert all(r["value"] == 0.004 and r["error"] is None for r in rows)
    queries = [parse_qs(urlsplit(path).query)["query"][0] for path, _ in scripted_server.requests]
    assert len(queries) == 4 and f'customer="{canary}"' in queries[0]


def test_the_plan_shows_a_provider_that_is_down_as_an_error_not_a_value(make_customers, closed_port, monkeypatch):
    make_customers(5)
    monkeypatch.setenv("ANALYSIS_PROMETHEUS_URL", f"http://127.0.0.1:{closed_port}")
    factory.reset()
    code, planned = plan(REQUEST)
    assert code == 200, planned
    rows = planned["analysis"]["measurements"]
    assert rows and all(r["value"] is None and r["error"] for r in rows)


def test_the_plan_asks_a_provider_that_hangs_once_and_answers_in_time(make_customers, scripted_server, monkeypatch):
    """Breakage tried: preview without its `down` memory: 4 requests of 5 s each (the API's 29 s would be near)."""
    make_customers(8)
    scripted_server.answer("/api/v1/query", body={"status": "success"}, delay=6.0)
    monkeypatch.setenv("ANALYSIS_PROMETHEUS_URL", scripted_server.url)
    factory.reset()
    started = time.monotonic()
    code, planned = plan(REQUEST)
    assert code == 200, planned
    assert time.monotonic() - started < 10
    rows = planned["analysis"]["measurements"]
    assert len(rows) == 4 and all(r["value"] is None and r["error"] for r in rows), rows
    assert len(scripted_server.requests) == 1
