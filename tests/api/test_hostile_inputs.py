"""Hostile and malformed input: every case is a 4xx with a message, and the database is unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke

BASE = {"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 10}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


HOSTILE_VERSIONS = [
    "v1,2",
    "v1=2",
    "v1[0]",
    "v1 2",
    " v1",
    "v1\n",
    "v1\nmalicious",
    "$(reboot)",
    "`id`",
    "v1;rm -rf /",
    "a" * 129,
    "-v1",
    ".v1",
    "",
    "v1/2",
    "v1\\2",
    "v1\t",
    "v1\x00",
    "v1{2}",
    "v1'2",
    'v1"2',
    "v1|2",
    "ｖ1.2.0",
    "v1.2.0\u200b",
    "v1:latest",
    "v1@sha256",
    "--set=x",
    "*",
    "../v1",
]
HOSTILE_BODIES: list[tuple[str, Any]] = [
    *((f"version {v!r}", with_(version=v)) for v in HOSTILE_VERSIONS),
    ("version number", with_(version=120)),
    ("version null", with_(version=None)),
    ("version list", with_(version=["v1"])),
    ("unknown component", with_(component="billing")),
    ("component uppercase", with_(component="API")),
    ("component with space", with_(component="api ")),
    ("component missing", {k: v for k, v in BASE.items() if k != "component"}),
    ("version missing", {k: v for k, v in BASE.items() if k != "version"}),
    ("strategy missing", {k: v for k, v in BASE.items() if k != "strategy"}),
    ("unknown strategy", with_(strategy="bluegreen")),
    ("canaryPercent 0", with_(canaryPercent=0)),
    ("canaryPercent 101", with_(canaryPercent=101)),
    ("canaryPercent negative", with_(canaryPercent=-5)),
    ("canaryPercent 'ten'", with_(canaryPercent="ten")),
    ("canaryPercent '10'", with_(canaryPercent="10")),
    ("canaryPercent 10.5", with_(canaryPercent=10.5)),
    ("canaryPercent true", with_(canaryPercent=True)),
    ("batchSize 0", with_(strategy="batch", batchSize=0)),
    ("batchSize negative", with_(strategy="batch", batchSize=-1)),
    ("batchSize huge", with_(strategy="batch", batchSize=10**12)),
    ("batchSize string", with_(strategy="batch", batchSize="10")),
    ("maxConcurrency 0", with_(maxConcurrency=0)),
    ("bakeSeconds negative", with_(bakeSeconds=-1)),
    ("unknown field", with_(canarypercent=10)),
    ("customer id with /", with_(customerIds=["cust/../x"])),
    ("customer id ..", with_(customerIds=[".."])),
    ("customer id with dot", with_(customerIds=["cust.abc"])),
    ("customer id cyrillic look-alike", with_(customerIds=["сust_abc123"])),
    ("customer id fullwidth", with_(customerIds=["ｃust_abc123"])),
    ("customer id with newline", with_(customerIds=["cust_abc\n"])),
    ("customer id too long", with_(customerIds=["c" * 64])),
    ("customer id empty", with_(customerIds=[""])),
    ("customer ids empty list", with_(customerIds=[])),
    ("customer ids duplicated", with_(customerIds=["cust_0001", "cust_0001"])),
    ("label value with space", with_(labels={"tier": "gold plus"})),
    ("failureThreshold both", with_(failureThreshold={"percent": 10, "count": 1})),
    ("failureThreshold percent 150", with_(failureThreshold={"percent": 150})),
    ("failureThreshold empty", with_(failureThreshold={})),
    ("failureThreshold count negative", with_(failureThreshold={"count": -1})),
    ("autoRollback string", with_(autoRollback="yes")),
    ("healthCheck path traversal", with_(healthCheck={"httpPath": "/../admin"})),
    ("healthCheck path without slash", with_(healthCheck={"httpPath": "healthz"})),
    ("healthCheck path with space", with_(healthCheck={"httpPath": "/a b"})),
    ("healthCheck path with query", with_(healthCheck={"httpPath": "/h?x=$(id)"})),
    ("healthCheck bad service", with_(healthCheck={"service": "Bad_Name"})),
    ("healthCheck bad port", with_(healthCheck={"port": "-1"})),
    ("healthCheck timeout 5", with_(healthCheck={"timeoutSeconds": 5})),
    ("healthCheck unknown field", with_(healthCheck={"url": "http://169.254.169.254/"})),
    ("body is a list", [BASE]),
    ("body is a string", "deploy"),
    ("body is null", None),
]
RAW_BODIES = [("not json", "{component: api"), ("empty body", ""), ("truncated json", '{"component": "api"')]


@pytest.fixture
def fleet(make_customers, fake_workflow):
    make_customers(5)
    return fake_workflow


def _assert_rejected(response: dict[str, Any]) -> dict[str, Any]:
    assert 400 <= response["statusCode"] < 500, response
    data = body(response)
    assert isinstance(data["message"], str) and data["message"]
    return data


@pytest.mark.parametrize(("case", "payload"), HOSTILE_BODIES, ids=[c for c, _ in HOSTILE_BODIES])
def test_hostile_deploy_body_is_rejected_and_nothing_written(fleet, database_url, case, payload):
    before = snapshot(database_url)
    event = api_event("api_deploy")
    event["body"] = __import__("json").dumps(payload)
    _assert_rejected(invoke("api_deploy", event))
    assert snapshot(database_url) == before, case
    assert fleet.started == []


@pytest.mark.parametrize(("case", "raw"), RAW_BODIES, ids=[c for c, _ in RAW_BODIES])
def test_malformed_deploy_body_is_rejected(fleet, database_url, case, raw):
    before = snapshot(database_url)
    _assert_rejected(invoke("api_deploy", api_event("api_deploy", raw_body=raw)))
    assert snapshot(database_url) == before


def test_version_message_says_what_is_allowed(fleet):
    data = _assert_rejected(invoke("api_deploy", api_event("api_deploy", body=with_(version="v1,2"))))
    assert "version" in data["message"] and "image tag" in data["message"]


HOSTILE_PATHS = [
    ("status", "api_upgrades_status", {"upgradeId": "abc"}),
    ("status", "api_upgrades_status", {"upgradeId": "0"}),
    ("status", "api_upgrades_status", {"upgradeId": "-1"}),
    ("status", "api_upgrades_status", {"upgradeId": "1;DROP TABLE customers"}),
    ("status", "api_upgrades_status", {"upgradeId": "99999999999"}),
    ("logs", "api_upgrades_logs", {"upgradeId": "1 OR 1=1"}),
    ("rollback", "api_control_rollback", {"upgradeId": "1", "customerId": "cust/../x"}),
    ("rollback", "api_control_rollback", {"upgradeId": "1", "customerId": ".."}),
    ("rollback", "api_control_rollback", {"upgradeId": "1", "customerId": "сust_abc123"}),
    ("rollback", "api_control_rollback", {"upgradeId": "1", "customerId": "$(id)"}),
    ("continue", "api_control_continue", {"upgradeId": "1e3"}),
    ("job", "api_queue_job", {"jobId": "../../etc"}),
    ("job", "api_queue_job", {"jobId": "x" * 81}),
]
FUNCTION_OF = {
    "api_upgrades_status": "api_upgrades",
    "api_upgrades_logs": "api_upgrades",
    "api_control_rollback": "api_control",
    "api_control_continue": "api_control",
    "api_queue_job": "api_queue",
}


def _path_for(event_name: str, params: dict[str, str]) -> str:
    template = {
        "api_upgrades_status": "/api/upgrades/{upgradeId}/status",
        "api_upgrades_logs": "/api/upgrades/{upgradeId}/logs",
        "api_control_rollback": "/api/upgrades/{upgradeId}/rollback/{customerId}",
        "api_control_continue": "/api/upgrades/{upgradeId}/continue",
        "api_queue_job": "/api/queue/jobs/{jobId}",
    }[event_name]
    return template.format(**params)


@pytest.mark.parametrize(("kind", "event_name", "params"), HOSTILE_PATHS, ids=[f"{k}-{p}" for k, _, p in HOSTILE_PATHS])
def test_hostile_path_parameters_are_rejected(fleet, database_url, kind, event_name, params):
    before = snapshot(database_url)
    event = api_event(event_name, path=_path_for(event_name, params), path_params=params)
    _assert_rejected(invoke(FUNCTION_OF[event_name], event))
    assert snapshot(database_url) == before


HOSTILE_QUERIES = [
    {"limit": "0"},
    {"limit": "1001"},
    {"limit": "ten"},
    {"offset": "-1"},
    {"status": "done; DROP"},
    {"status": "FAILED"},
    {"operation": "delete"},
    {"customerId": "a/b"},
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=[str(q) for q in HOSTILE_QUERIES])
def test_hostile_log_queries_are_rejected(fleet, query):
    event = api_event("api_upgrades_logs", path="/api/upgrades/1/logs", path_params={"upgradeId": "1"}, query=query)
    _assert_rejected(invoke("api_upgrades", event))


def test_hostile_input_count_is_at_least_forty():
    assert len(HOSTILE_BODIES) + len(RAW_BODIES) + len(HOSTILE_PATHS) + len(HOSTILE_QUERIES) >= 40


HOSTILE_CONTROL_BODIES = [
    ("abort", {"rollback": "yes"}),
    ("abort", {"rollback": 1}),
    ("abort", {"reason": "x" * 501}),
    ("abort", {"force": True}),
    ("abort", [{"rollback": True}]),
    ("rollback", {"maxConcurrency": 0}),
    ("rollback", {"maxConcurrency": "5"}),
    ("rollback", {"maxConcurrency": 1001}),
    ("rollback", {"customers": ["cust_0001"]}),
]


@pytest.mark.parametrize(
    ("action", "payload"), HOSTILE_CONTROL_BODIES, ids=[f"{a}-{p}" for a, p in HOSTILE_CONTROL_BODIES]
)
def test_hostile_abort_and_rollback_bodies_are_rejected(fleet, database_url, sql, action, payload):
    uid = invoke("api_deploy", api_event("api_deploy", body={"component": "api", "version": "v1", "strategy": "all"}))
    upgrade_id = body(uid)["upgradeId"]
    sql("UPDATE system_upgrades SET status = 'completed' WHERE id = %s", int(upgrade_id))
    sql("UPDATE customer_upgrade_logs SET status = 'completed'")
    before = snapshot(database_url)
    event = api_event(
        "api_control_continue", path=f"/api/upgrades/{upgrade_id}/{action}", path_params={"upgradeId": upgrade_id}
    )
    event["body"] = __import__("json").dumps(payload)
    _assert_rejected(invoke("api_control", event))
    assert snapshot(database_url) == before
    assert len(fleet.started) == 1  # the deploy only


def test_hostile_input_figures():
    tried = (
        len(HOSTILE_BODIES) + len(RAW_BODIES) + len(HOSTILE_PATHS) + len(HOSTILE_QUERIES) + len(HOSTILE_CONTROL_BODIES)
    )
    assert tried >= 40
