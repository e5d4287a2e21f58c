"""Version compatibility rules through the API: managed (create, list, delete), obeyed by deploys, plans
and rollbacks. Real PostgreSQL and handlers; Step Functions faked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.helpers import control
from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke

DASHBOARD_NEEDS_API = {"component": "dashboard", "versions": ">=2.0",
                       "requires": {"component": "api", "versions": ">=1.2"}, "reason": "new auth endpoints"}  # fmt: skip
API2_FROM_14 = {"component": "api", "versions": "==2.*", "upgradeFrom": ">=1.4"}


def add_rule(rule: dict[str, Any]) -> tuple[int, Any]:
    response = invoke("api_customers", api_event("api_customers_rules_create", body=rule))
    return response["statusCode"], body(response)


def list_rules() -> Any:
    response = invoke("api_customers", api_event("api_customers_rules_list"))
    assert response["statusCode"] == 200, response["body"]
    return body(response)


def delete_rule(rule_id: str) -> tuple[int, Any]:
    event = api_event("api_customers_rules_delete", path=f"/api/compatibility-rules/{rule_id}",
                      path_params={"ruleId": rule_id})  # fmt: skip
    response = invoke("api_customers", event)
    return response["statusCode"], body(response)


def deploy(payload: dict[str, Any]) -> tuple[int, Any]:
    response = invoke("api_deploy", api_event("api_deploy", body=payload))
    return response["statusCode"], body(response)


def plan(payload: dict[str, Any]) -> tuple[int, Any]:
    response = invoke("api_upgrades", api_event("api_upgrades_plan", body=payload))
    return response["statusCode"], body(response)


def rollback_customer(upgrade_id: str, customer_id: str, payload: Any = None) -> tuple[int, Any]:
    event = api_event("api_control_rollback", path=f"/api/upgrades/{upgrade_id}/rollback/{customer_id}",
                      path_params={"upgradeId": upgrade_id, "customerId": customer_id})  # fmt: skip
    event["body"] = json.dumps(payload) if payload is not None else None
    response = invoke("api_control", event)
    return response["statusCode"], body(response)


@pytest.fixture
def fleet(make_customers, sql, fake_workflow) -> None:
    """cust_0001..0004 with api v1.1.0 and dashboard v1.9.0; cust_0003 and cust_0004 run api v1.10.0."""
    make_customers(4)
    sql("UPDATE customer_component_versions SET version = 'v1.10.0'"
        " WHERE component = 'api' AND customer_id IN ('cust_0003', 'cust_0004')")  # fmt: skip


# ------------------------------------------------------------------------------------ managing rules
def test_rules_are_created_listed_and_deleted(env):
    code, created = add_rule(DASHBOARD_NEEDS_API)
    assert code == 201, created
    assert created["description"] == "rule 1: dashboard >=2.0 requires api >=1.2 (new auth endpoints)"
    assert created["createdBy"] and created["upgradeFrom"] is None
    code, second = add_rule(API2_FROM_14)
    assert code == 201 and second["upgradeFrom"] == ">=1.4" and second["requires"] is None
    assert [r["ruleId"] for r in list_rules()["rules"]] == ["1", "2"]
    assert delete_rule("1") == (200, {"message": "compatibility rule 1 deleted", "ruleId": "1"})
    assert list_rules()["count"] == 1
    code, missing = delete_rule("1")
    assert (code, missing["error"]) == (404, "RuleNotFound")


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({**API2_FROM_14, "versions": ">>2"}, "versions"),
        ({**API2_FROM_14, "upgradeFrom": "1.4 or so"}, "upgradeFrom"),
        ({**DASHBOARD_NEEDS_API, "requires": {"component": "api", "versions": "=>1.2"}}, "requires.versions"),
        ({**DASHBOARD_NEEDS_API, "requires": {"component": "dashboard", "versions": ">=1"}}, "requires.component"),
    ],
)
def test_a_rule_that_cannot_be_evaluated_is_refused_naming_the_field(env, database_url, rule, field):
    before = snapshot(database_url)
    code, answer = add_rule(rule)
    assert code == 422, answer
    assert answer["errors"][0]["field"] == field
    assert snapshot(database_url) == before


def test_a_rule_takes_exactly_one_kind(env):
    both = {**DASHBOARD_NEEDS_API, "upgradeFrom": ">=1"}
    neither = {"component": "api", "versions": ">=2"}
    for rule in (both, neither):
        code, answer = add_rule(rule)
        assert code == 422 and "exactly one of requires or upgradeFrom" in answer["message"]


# -------------------------------------------------------------------------------------------- deploys
def test_a_deploy_that_breaks_a_rule_is_refused_listing_the_customers(fleet, database_url):
    add_rule(API2_FROM_14)
    before = snapshot(database_url)
    code, answer = deploy({"component": "api", "version": "v2.0.0", "strategy": "all"})
    assert code == 422, answer
    assert answer["error"] == "IncompatibleVersions"
    assert sorted(c["customerId"] for c in answer["incompatible"]) == ["cust_0001", "cust_0002"]
    assert answer["incompatible"][0]["rule"] == "rule 1: api ==2.* upgrades only from api >=1.4"
    assert answer["incompatible"][0]["detail"] == "api would go from v1.1.0 to v2.0.0"
    assert "skipIncompatible" in answer["message"]
    assert snapshot(database_url) == before


def test_skip_incompatible_leaves_them_out_with_the_rule_as_the_reason(fleet, sql):
    add_rule(API2_FROM_14)
    request = {"component": "api", "version": "v2.0.0", "strategy": "all", "skipIncompatible": True}
    _, planned = plan(request)
    code, started = deploy(request)
    assert code == 202, started
    assert (started["waves"], started["skipped"], started["leftOut"]) == ([2], 2, {"incompatible": 2})
    rows = sql("SELECT customer_id, status, left_out, error FROM customer_upgrade_logs WHERE wave = -1 ORDER BY id")
    assert [(r["customer_id"], r["status"], r["left_out"]) for r in rows] == [
        ("cust_0001", "skipped", "incompatible"), ("cust_0002", "skipped", "incompatible")
    ]  # fmt: skip
    assert "breaks rule 1: api ==2.* upgrades only from api >=1.4" in rows[0]["error"]
    # the plan said the same
    assert [c["customerId"] for c in planned["waves"][0]["customers"]] == ["cust_0003", "cust_0004"]
    assert {e["customerId"]: e["reason"] for e in planned["leftOut"]} == {
        "cust_0001": "incompatible", "cust_0002": "incompatible"
    }  # fmt: skip
    assert planned["incompatible"] == []


def test_the_plan_shows_who_would_refuse_a_deploy(fleet, database_url):
    add_rule(DASHBOARD_NEEDS_API)
    before = snapshot(database_url)
    code, planned = plan({"component": "dashboard", "version": "v2.1.0", "strategy": "all"})
    assert code == 200, planned
    assert "would be refused (422)" in planned["message"]
    assert [(c["customerId"], c["detail"]) for c in planned["incompatible"]] == [
        ("cust_0001", "dashboard v2.1.0 with api v1.1.0"), ("cust_0002", "dashboard v2.1.0 with api v1.1.0")
    ]  # fmt: skip
    # api v1.10.0 satisfies >=1.2 (as versions; as strings "v1.10.0" < "v1.2")
    assert [c["customerId"] for c in planned["waves"][0]["customers"]] == ["cust_0003", "cust_0004"]
    assert snapshot(database_url) == before


def test_rules_about_other_components_do_not_concern_a_deploy(fleet):
    add_rule(API2_FROM_14)
    code, _ = deploy({"component": "exporter", "version": "v3.0.0", "strategy": "all"})
    assert code == 202


# ------------------------------------------------------------------------------------------ rollbacks
@pytest.fixture
def upgraded(fleet, sql) -> str:
    """api v1.1.0 -> v1.2.0 completed on cust_0001 and cust_0002, whose dashboards then went to v2.0.0."""
    code, started = deploy({"component": "api", "version": "v1.2.0", "strategy": "all",
                            "customerIds": ["cust_0001", "cust_0002"]})  # fmt: skip
    assert code == 202, started
    sql("UPDATE system_upgrades SET status = 'completed'")
    sql("UPDATE customer_upgrade_logs SET status = 'completed', version_after = 'v1.2.0'")
    sql("UPDATE customer_component_versions SET version = CASE component WHEN 'api' THEN 'v1.2.0' ELSE 'v2.0.0' END"
        " WHERE customer_id IN ('cust_0001', 'cust_0002')")  # fmt: skip
    add_rule(DASHBOARD_NEEDS_API)
    return str(started["upgradeId"])


def test_a_rollback_that_would_break_a_rule_says_so_and_needs_force(upgraded, database_url, fake_workflow):
    before = snapshot(database_url)
    code, answer = rollback_customer(upgraded, "cust_0001")
    assert code == 422, answer
    assert answer["error"] == "IncompatibleVersions"
    assert answer["incompatible"] == [{"customerId": "cust_0001", "ruleId": "1",
                                       "rule": "rule 1: dashboard >=2.0 requires api >=1.2 (new auth endpoints)",
                                       "detail": "dashboard v2.0.0 with api v1.1.0"}]  # fmt: skip
    assert "force" in answer["message"]
    assert snapshot(database_url) == before
    started = len(fake_workflow.started)
    code, forced = rollback_customer(upgraded, "cust_0001", {"force": True})
    assert code == 202, forced
    assert forced["toVersion"] == "v1.1.0" and len(fake_workflow.started) == started + 1


def test_a_whole_upgrade_rollback_that_would_break_a_rule_needs_force(upgraded, database_url):
    before = snapshot(database_url)
    code, answer = control("rollback", upgraded, {})
    assert code == 422, answer
    assert sorted(c["customerId"] for c in answer["incompatible"]) == ["cust_0001", "cust_0002"]
    assert snapshot(database_url) == before
    code, forced = control("rollback", upgraded, {"force": True})
    assert code == 202 and forced["customers"] == 2


def test_a_rollback_that_keeps_the_rules_needs_no_force(upgraded, sql):
    sql("UPDATE customer_component_versions SET version = 'v1.9.0' WHERE component = 'dashboard'")
    code, answer = rollback_customer(upgraded, "cust_0001")
    assert code == 202, answer
