"""Rings and promotion rules through the API (docs/rings.md): a customer's ring (PATCH, the list's filter, the
fleet's counts), deploys and plans that target rings, the promotion gate (422 NotPromoted with its evidence,
force recorded), GET /api/promotions and the audited /api/promotion-rules. Real PostgreSQL and handlers; Step
Functions faked (the state machine's part: tests/e2e/test_rings.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke

REQUEST = {"component": "api", "version": "v1.2.0", "strategy": "all"}


def deploy(payload: dict[str, Any]) -> tuple[int, Any]:
    response = invoke("api_deploy", api_event("api_deploy", body={**REQUEST, **payload}))
    return response["statusCode"], body(response)


def plan(payload: dict[str, Any]) -> tuple[int, Any]:
    response = invoke("api_upgrades", api_event("api_upgrades_plan", body={**REQUEST, **payload}))
    return response["statusCode"], body(response)


def patch(customer_id: str, payload: dict[str, Any]) -> tuple[int, Any]:
    event = api_event("api_customers_patch", path=f"/api/customers/{customer_id}",
                      path_params={"customerId": customer_id}, body=payload)  # fmt: skip
    response = invoke("api_customers", event)
    return response["statusCode"], body(response)


def get(function: str, event: str, path: str, params: dict[str, str] | None = None,
        query: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
    response = invoke(function, api_event(event, path=path, path_params=params, query=query))
    return response["statusCode"], body(response)


def set_rule(component: str, rule: dict[str, Any]) -> tuple[int, Any]:
    event = api_event("api_customers_promotion_rules_set", path=f"/api/promotion-rules/{component}",
                      path_params={"component": component}, body=rule)  # fmt: skip
    response = invoke("api_customers", event)
    return response["statusCode"], body(response)


def promotions(version: str = "v1.2.0") -> dict[str, Any]:
    code, data = get("api_upgrades", "api_upgrades_promotions", "/api/promotions",
                     query={"component": "api", "version": version})  # fmt: skip
    assert code == 200, data
    return data


@pytest.fixture
def rings(make_customers, sql, fake_workflow) -> None:
    """cust_0001..0002 staging, 0003 early, 0004..0005 without a ring (production), all on api v1.1.0."""
    make_customers(5)
    sql("UPDATE customers SET ring = 'staging' WHERE id IN ('cust_0001', 'cust_0002')")
    sql("UPDATE customers SET ring = 'early' WHERE id = 'cust_0003'")


# ------------------------------------------------------------------------------------------- the fleet
def test_a_customer_without_a_ring_is_in_the_last_ring_and_the_fleet_counts_every_ring(rings):
    code, fleet = get("api_customers", "api_customers_fleet", "/api/fleet")
    assert code == 200
    assert fleet["rings"] == ["staging", "internal", "early", "production"]
    assert fleet["byRing"] == {"staging": 2, "internal": 0, "early": 1, "production": 2}
    code, listed = get("api_customers", "api_customers_list", "/api/customers", query={"ring": "production"})
    assert code == 200
    assert [(c["customerId"], c["ring"]) for c in listed["customers"]] == [("cust_0004", "production"),
                                                                          ("cust_0005", "production")]  # fmt: skip
    code, listed = get("api_customers", "api_customers_list", "/api/customers", query={"ring": "nowhere"})
    assert (code, listed["count"]) == (200, 0)


def test_patch_moves_a_customer_to_a_ring_and_the_history_says_who(rings, sql):
    code, answer = patch("cust_0004", {"ring": "internal"})
    assert code == 200, answer
    assert answer["customer"]["ring"] == "internal"
    assert answer["changes"] == {"ring": {"before": None, "after": "internal"}}
    code, back = patch("cust_0004", {"ring": None})
    assert (code, back["customer"]["ring"]) == (200, "production")
    assert sql("SELECT ring FROM customers WHERE id = 'cust_0004'") == [{"ring": None}]
    kinds = sql("SELECT kind, detail FROM customer_events WHERE customer_id = 'cust_0004' ORDER BY id")
    assert [k["detail"]["ring"] for k in kinds] == [{"before": None, "after": "internal"},
                                                    {"before": "internal", "after": None}]  # fmt: skip


def test_an_unknown_ring_is_a_422_naming_it_and_writes_nothing(rings, database_url):
    before = snapshot(database_url)
    code, answer = patch("cust_0004", {"ring": "canary-land"})
    assert code == 422
    assert answer["errors"][0]["field"] == "ring" and "staging, internal, early, production" in answer["message"]
    code, answer = deploy({"rings": ["staging", "prod"]})
    assert code == 422
    assert answer["errors"][0]["field"] == "rings[1]"
    assert snapshot(database_url) == before


def test_a_ring_set_by_the_namespace_label_cannot_be_patched(rings, sql, database_url):
    sql("UPDATE customers SET ring = 'early', ring_from_label = TRUE WHERE id = 'cust_0005'")
    before = snapshot(database_url)
    code, answer = patch("cust_0005", {"ring": "staging"})
    assert code == 409
    assert answer["error"] == "RingFromLabel" and "ring label" in answer["message"]
    assert snapshot(database_url) == before


# ------------------------------------------------------------------------------- deploys that target rings
def test_a_deploy_to_rings_targets_only_their_customers_and_records_each_ring(rings, sql):
    code, started = deploy({"rings": ["early", "staging"]})
    assert code == 202, started
    rows = sql("SELECT customer_id, ring, wave FROM customer_upgrade_logs ORDER BY customer_id")
    assert [(r["customer_id"], r["ring"]) for r in rows] == [("cust_0001", "staging"), ("cust_0002", "staging"),
                                                            ("cust_0003", "early")]  # fmt: skip
    (parameters,) = sql("SELECT parameters FROM system_upgrades")
    assert parameters["parameters"]["rings"] == ["staging", "early"]


def test_without_a_rule_a_version_goes_anywhere_as_before_rings(rings):
    code, started = deploy({})
    assert code == 202, started
    assert started["total"] == 5


# ---------------------------------------------------------------------------------------- the gate
def test_with_a_rule_production_before_staging_is_refused_with_the_evidence_and_nothing_written(rings, database_url):
    assert set_rule("api", {"minSuccessPercent": 100, "minBakeSeconds": 0})[0] == 200
    before = snapshot(database_url)
    code, answer = deploy({"rings": ["production"]})
    assert code == 422, answer
    assert answer["error"] == "NotPromoted"
    promotion = answer["promotion"]
    assert (promotion["ring"], promotion["previousRing"], promotion["allowed"]) == ("production", "early", False)
    assert [m["reason"] for m in promotion["missing"]] == ["never_ran"]
    assert "force" in answer["message"]
    assert snapshot(database_url) == before
    # a deploy to every ring needs every ring allowed: early (after staging, internal has nobody) is refused
    code, answer = deploy({})
    assert (code, answer["promotion"]["ring"], answer["promotion"]["previousRing"]) == (422, "early", "staging")
    assert snapshot(database_url) == before


def test_the_plan_shows_the_same_decision_and_says_the_deploy_would_be_refused(rings):
    set_rule("api", {"minSuccessPercent": 100, "minBakeSeconds": 0})
    code, planned = plan({"rings": ["staging", "early"]})
    assert code == 200, planned
    assert [(p["ring"], p["allowed"]) for p in planned["promotions"]] == [("staging", True), ("early", False)]
    assert planned["message"].startswith("a deploy would be refused (422 NotPromoted): api v1.2.0 on ring early")
    code, planned = plan({"rings": ["staging"]})
    assert [(p["ring"], p["allowed"]) for p in planned["promotions"]] == [("staging", True)]
    assert "would start" in planned["message"]


def test_force_needs_a_reason_and_a_forced_promotion_is_recorded_and_shown(rings, sql, database_url):
    set_rule("api", {"minSuccessPercent": 100, "minBakeSeconds": 0})
    before = snapshot(database_url)
    code, answer = deploy({"rings": ["production"], "force": True})
    assert code == 422 and answer["errors"][0]["field"] == "force" and "forceReason" in answer["errors"][0]["message"]
    code, answer = deploy({"rings": ["production"], "forceReason": "hotfix"})
    assert code == 422 and answer["errors"][0]["field"] == "force"
    assert snapshot(database_url) == before
    code, started = deploy({"rings": ["production"], "force": True, "forceReason": "CVE-2026-1234 hotfix"})
    assert code == 202, started
    (override,) = sql("SELECT upgrade_id, ring, reason, forced_by, missing FROM promotion_overrides")
    assert (str(override["upgrade_id"]), override["ring"], override["reason"]) == (
        started["upgradeId"], "production", "CVE-2026-1234 hotfix")  # fmt: skip
    assert override["forced_by"] and [m["reason"] for m in override["missing"]] == ["never_ran"]
    (parameters,) = sql("SELECT parameters FROM system_upgrades")
    assert parameters["parameters"]["force"]["reason"] == "CVE-2026-1234 hotfix"
    production = next(r for r in promotions()["rings"] if r["ring"] == "production")
    assert [o["reason"] for o in production["overrides"]] == ["CVE-2026-1234 hotfix"]


def test_a_force_where_the_rule_allows_records_no_override(rings, sql):
    set_rule("api", {"minSuccessPercent": 100, "minBakeSeconds": 0})
    code, started = deploy({"rings": ["staging"], "force": True, "forceReason": "habit"})
    assert code == 202, started
    assert sql("SELECT * FROM promotion_overrides") == []


# ----------------------------------------------------------------------------- promotions and rules
def test_promotions_show_the_path_and_the_next_ring_from_the_recorded_evidence(rings, sql):
    set_rule("api", {"minSuccessPercent": 50, "minBakeSeconds": 0})
    path = promotions()
    assert (path["enforced"], path["nextRing"]) == (True, "staging")
    code, started = deploy({"rings": ["staging"]})
    assert code == 202
    assert promotions()["nextRing"] == "staging"  # still running there
    sql("UPDATE customer_upgrade_logs SET status = 'completed', completed_at = NOW()"
        " WHERE customer_id = 'cust_0001'")  # fmt: skip
    sql("UPDATE customer_upgrade_logs SET status = 'failed', completed_at = NOW() WHERE customer_id = 'cust_0002'")
    sql("UPDATE system_upgrades SET status = 'completed', completed_at = NOW()")
    path = promotions()
    staging = path["rings"][0]
    assert (staging["evidence"]["targeted"], staging["evidence"]["succeeded"]) == (2, 1)
    internal = path["rings"][1]
    assert internal["decision"]["allowed"] is True  # 1 of 2 is 50 %: reached exactly
    assert path["nextRing"] == "early"  # internal has no customer: passed over
    set_rule("api", {"minSuccessPercent": 51, "minBakeSeconds": 0})
    refused = promotions()["rings"][1]["decision"]
    assert [m["reason"] for m in refused["missing"]] == ["success_too_low"]
    assert (refused["missing"][0]["succeeded"], refused["missing"][0]["targeted"]) == (1, 2)


def test_rules_are_listed_for_every_component_changed_with_an_audit_and_deleted(rings):
    code, listed = get("api_customers", "api_customers_promotion_rules_list", "/api/promotion-rules")
    assert code == 200
    assert {r["component"]: r["configured"] for r in listed["rules"]} == {
        "api": False, "dashboard": False, "exporter": False, "mosquitto": False}  # fmt: skip
    assert set_rule("api", {"minSuccessPercent": 90, "minBakeSeconds": 3600})[1]["configured"] is True
    assert set_rule("api", {"minSuccessPercent": 95, "minBakeSeconds": 60, "noHalt": False})[0] == 200
    code, history = get("api_customers", "api_customers_promotion_rules_history", "/api/promotion-rules/api/history",
                        {"component": "api"})  # fmt: skip
    assert code == 200
    assert [(c["kind"], (c["before"] or {}).get("minSuccessPercent"), c["after"]["minSuccessPercent"])
            for c in history["changes"]] == [("set", None, 90.0), ("set", 90.0, 95.0)]  # fmt: skip
    event = api_event("api_customers_promotion_rules_delete", path="/api/promotion-rules/api",
                      path_params={"component": "api"})  # fmt: skip
    first, second = invoke("api_customers", event), invoke("api_customers", event)
    assert (first["statusCode"], body(first)["configured"]) == (200, False)
    assert (second["statusCode"], body(second)["error"]) == (404, "PromotionRuleNotFound")


@pytest.mark.parametrize(("rule", "field"), [({"minSuccessPercent": 100.5, "minBakeSeconds": 0}, "minSuccessPercent"),
                                              ({"minSuccessPercent": 90, "minBakeSeconds": -1}, "minBakeSeconds"),
                                              ({"minSuccessPercent": 90}, "minBakeSeconds")])  # fmt: skip
def test_a_bad_rule_is_a_422_naming_the_field_and_writes_nothing(rings, database_url, rule, field):
    before = snapshot(database_url)
    code, answer = set_rule("api", rule)
    assert code == 422
    assert [e["field"] for e in answer["errors"]] == [field]
    assert snapshot(database_url) == before


def test_the_plan_and_the_deploy_agree_on_who_a_ring_deploy_changes(rings, sql):
    set_rule("api", {"minSuccessPercent": 100, "minBakeSeconds": 0})
    code, planned = plan({"rings": ["staging"], "strategy": "batch", "batchSize": 1})
    assert code == 200, planned
    code, started = deploy({"rings": ["staging"], "strategy": "batch", "batchSize": 1})
    assert code == 202, started
    rows = sql("SELECT customer_id, wave FROM customer_upgrade_logs WHERE wave >= 0 ORDER BY wave, customer_id")
    assert [[c["customerId"] for c in w["customers"]] for w in planned["waves"]] == [[r["customer_id"]] for r in rows]
    assert {e["customerId"]: e["reason"] for e in planned["leftOut"]} == dict.fromkeys(
        ["cust_0003", "cust_0004", "cust_0005"], "not_matching")  # fmt: skip


def test_a_rule_is_kept_to_two_decimals_and_a_whole_bake_may_be_written_118_0(rings, sql):
    # (schemathesis found both: JSON's 118.0 is the integer 118; NUMERIC(5,2) would round silently)
    code, answer = set_rule("api", {"minSuccessPercent": 85.8641905816017, "minBakeSeconds": 118.0})
    assert code == 200, answer
    assert (answer["minSuccessPercent"], answer["minBakeSeconds"]) == (85.86, 118)
    (stored,) = sql("SELECT min_success_percent, min_bake_seconds FROM promotion_rules")
    assert (float(stored["min_success_percent"]), stored["min_bake_seconds"]) == (85.86, 118)
