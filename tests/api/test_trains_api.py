"""Release trains through the API (issue 21 item 3, docs/rings.md "Trains"): the request's checks (a 422 naming the
field, nothing written), the promotion rules checked for every component of a train, and the plan and the deploy
agreeing (one function). Real PostgreSQL and handlers; Step Functions faked (the state machine's part:
tests/e2e/test_trains.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke

TRAIN = {"api": "v2.0.0", "dashboard": "v2.0.0"}


def _send(function: str, event_name: str, raw: str) -> tuple[int, Any]:
    event = api_event(event_name, body={})
    event["body"] = raw
    response = invoke(function, event)
    return response["statusCode"], body(response)


def deploy(payload: dict[str, Any]) -> tuple[int, Any]:
    return _send("api_deploy", "api_deploy", json.dumps({"strategy": "all", **payload}))


def plan(payload: dict[str, Any]) -> tuple[int, Any]:
    return _send("api_upgrades", "api_upgrades_plan", json.dumps({"strategy": "all", **payload}))


def fields(answer: dict[str, Any]) -> list[str]:
    return [e["field"] for e in answer.get("errors", [])]


@pytest.fixture
def fleet(make_customers, sql, fake_workflow) -> None:
    """Four customers on api v1.1.0 and dashboard v1.9.0, in staging (no promotion rule refuses them)."""
    make_customers(4)
    sql("UPDATE customers SET ring = 'staging'")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"strategy": "all", "components": {"api": "v2.0.0", "api": "v2.1.0"}}', "api"),
        ('{"strategy": "all", "components": {}}', "components"),
        ('{"strategy": "all", "components": {"apix": "v2.0.0"}}', "components.apix.[key]"),
        ('{"strategy": "all", "components": {"api": "v2.0.0 ; rm"}}', "components.api"),
        ('{"strategy": "all", "components": ["api"]}', "components"),
        ('{"strategy": "all", "component": "api", "version": "v2.0.0", "components": {"api": "v2.0.0"}}',
         "components"),
        ('{"strategy": "all", "components": {"api": "v2.0.0", "dashboard": "v2.0.0"}, "blueGreen": true}',
         "blueGreen"),
    ],
)  # fmt: skip
def test_a_bad_train_is_a_422_naming_the_field_and_writes_nothing(fleet, database_url, fake_workflow, raw, field):
    before = snapshot(database_url)
    for function, event_name in (("api_deploy", "api_deploy"), ("api_upgrades", "api_upgrades_plan")):
        code, answer = _send(function, event_name, raw)
        assert code == 422, answer
        assert field in fields(answer), answer
    assert snapshot(database_url) == before
    assert fake_workflow.started == []


def test_a_train_is_refused_when_any_of_its_components_is_not_promoted_and_allowed_with_force(fleet, sql):
    sql("UPDATE customers SET ring = 'production' WHERE id = 'cust_0004'")
    rule = api_event("api_customers_promotion_rules_set", path="/api/promotion-rules/dashboard",
                     path_params={"component": "dashboard"}, body={"minSuccessPercent": 100, "minBakeSeconds": 0})  # fmt: skip
    assert invoke("api_customers", rule)["statusCode"] == 200

    code, refused = deploy({"components": TRAIN})

    assert code == 422, refused
    assert refused["error"] == "NotPromoted"
    assert (refused["promotion"]["component"], refused["promotion"]["ring"]) == ("dashboard", "production")
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 0
    code, planned = plan({"components": TRAIN})
    assert code == 200, planned
    # (api has no rule: not checked; dashboard's rule is checked on every ring the train reaches)
    assert {(p["component"], p["ring"], p["allowed"]) for p in planned["promotions"]} == {
        ("dashboard", "staging", True), ("dashboard", "production", False),
    }  # fmt: skip
    assert planned["message"].startswith("a deploy would be refused (422 NotPromoted): ")

    code, forced = deploy({"components": TRAIN, "force": True, "forceReason": "hotfix train"})
    assert code == 202, forced
    overrides = sql("SELECT component, ring FROM promotion_overrides")
    assert [(o["component"], o["ring"]) for o in overrides] == [("dashboard", "production")]
    stored = sql("SELECT component, to_version, components, parameters FROM system_upgrades")[0]
    assert (stored["component"], stored["to_version"], stored["components"]) == ("api", "v2.0.0", list(TRAIN))
    assert stored["parameters"]["components"] == TRAIN


def test_the_plan_and_the_deploy_of_a_train_agree(fleet, sql):
    sql("UPDATE customer_component_versions SET version = 'v2.0.0' WHERE customer_id = 'cust_0001'")
    sql("INSERT INTO customer_pins (customer_id, component, version, reason, expires_at, pinned_by)"
        " VALUES ('cust_0002', 'dashboard', 'v1.9.0', 'holding dashboard', NOW() + interval '1 day', 'ops')")  # fmt: skip

    code, planned = plan({"components": TRAIN})
    assert code == 200, planned
    code, started = deploy({"components": TRAIN})
    assert code == 202, started

    waved = [c["customerId"] for w in planned["waves"] for c in w["customers"]]
    assert waved == ["cust_0003", "cust_0004"]
    assert planned["leftOutCounts"] == started["leftOut"] == {"already_at_version": 1, "pinned": 1}
    rows = sql(
        "SELECT customer_id, status, left_out, error, components FROM customer_upgrade_logs ORDER BY customer_id"
    )
    assert [(r["customer_id"], r["status"], r["left_out"]) for r in rows] == [
        ("cust_0001", "skipped", "already_at_version"), ("cust_0002", "skipped", "pinned"),
        ("cust_0003", "pending", None), ("cust_0004", "pending", None),
    ]  # fmt: skip
    assert rows[1]["error"].startswith("dashboard pinned to v1.9.0")
    assert rows[2]["components"] == {"api": {"from": "v1.1.0", "to": "v2.0.0"},
                                     "dashboard": {"from": "v1.9.0", "to": "v2.0.0"}}  # fmt: skip


def test_a_train_that_completed_on_a_ring_is_evidence_for_each_of_its_components(fleet, sql):
    """Breakage tried: the evidence query without its `components @>` branch: dashboard never_ran on staging."""
    sql("UPDATE customers SET ring = 'production' WHERE id = 'cust_0004'")
    for component in TRAIN:
        rule = api_event("api_customers_promotion_rules_set", path=f"/api/promotion-rules/{component}",
                         path_params={"component": component}, body={"minSuccessPercent": 100, "minBakeSeconds": 0})  # fmt: skip
        assert invoke("api_customers", rule)["statusCode"] == 200
    code, started = deploy({"components": TRAIN, "rings": ["staging"]})
    assert code == 202, started
    # the train completed on staging (the state machine's part is tests/e2e/test_trains.py)
    sql("UPDATE customer_upgrade_logs SET status = 'completed', completed_at = NOW() - interval '1 minute'")
    sql("UPDATE system_upgrades SET status = 'completed', completed_at = NOW() - interval '1 minute'")

    response = invoke("api_upgrades", api_event("api_upgrades_promotions", path="/api/promotions",
                                                 query={"component": "dashboard", "version": "v2.0.0"}))  # fmt: skip
    path = body(response)
    staging = next(r for r in path["rings"] if r["ring"] == "staging")
    assert (staging["evidence"]["targeted"], staging["evidence"]["succeeded"]) == (3, 3), staging
    code, alone = deploy({"component": "dashboard", "version": "v2.0.0", "rings": ["production"]})
    assert code == 202, alone
