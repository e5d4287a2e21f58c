"""Who a deploy leaves out and why (pins, already at the version, suspended, not matching), the dry-run
plan that equals what the deploy records, and idempotent deploys. Real PostgreSQL, Step Functions faked."""

from __future__ import annotations

import concurrent.futures
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from upgrader import factory
from upgrader.api.idempotency import request_hash
from upgrader.infra.errors import IdempotencyInProgress

from tests.api.helpers import status
from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke

SOON = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
API_120 = {"component": "api", "version": "v1.2.0", "strategy": "all"}


def plan(payload: dict[str, Any]) -> tuple[int, Any]:
    response = invoke("api_upgrades", api_event("api_upgrades_plan", body=payload))
    return response["statusCode"], body(response)


def deploy(payload: dict[str, Any], key: str | None = None, instance: int = 0) -> tuple[int, Any, dict[str, str]]:
    event = api_event("api_deploy", body=payload)
    if key is not None:
        event["headers"]["Idempotency-Key"] = key
        event["multiValueHeaders"]["Idempotency-Key"] = [key]
    response = invoke("api_deploy", event, instance)
    headers = {k: ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}
    return response["statusCode"], body(response), {**headers, **(response.get("headers") or {})}


def pin(customer_id: str, component: str, version: str, reason: str = "customer freeze", expires: str = SOON) -> None:
    event = api_event("api_customers_patch", path=f"/api/customers/{customer_id}", path_params={"customerId": customer_id},
                      body={"pins": {component: {"version": version, "reason": reason, "expiresAt": expires}}})  # fmt: skip
    response = invoke("api_customers", event)
    assert response["statusCode"] == 200, response["body"]


@pytest.fixture
def fleet(make_customers, sql) -> None:
    """cust_0001..0008 active with api v1.1.0 (0003, 0006 already at v1.2.0), 0009 suspended, 0010 decommissioned;
    cust_0002 pinned to v1.1.0, cust_0005 labelled canary."""
    make_customers(8)
    make_customers(1, start=9, status="suspended")
    make_customers(1, start=10, status="decommissioned")
    sql("UPDATE customer_component_versions SET version = 'v1.2.0'"
        " WHERE component = 'api' AND customer_id IN ('cust_0003', 'cust_0006')")  # fmt: skip
    sql("UPDATE customers SET labels = '{\"canary\": \"true\"}' WHERE id = 'cust_0005'")
    pin("cust_0002", "api", "v1.1.0", reason="contract renewal")


def left_out(answer: dict[str, Any]) -> dict[str, str]:
    return {entry["customerId"]: entry["reason"] for entry in answer["leftOut"]}


# -------------------------------------------------------------------------------------------- the plan
def test_the_plan_lists_the_waves_and_everyone_left_out_with_a_reason(fleet, database_url):
    before = snapshot(database_url)
    code, planned = plan({"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 20})
    assert code == 200, planned
    # canary-labelled first, then by id; 20 % of the 5 upgraded customers is one
    assert [[c["customerId"] for c in w["customers"]] for w in planned["waves"]] == [
        ["cust_0005"], ["cust_0001", "cust_0004", "cust_0007", "cust_0008"]
    ]  # fmt: skip
    assert [w["gate"] for w in planned["waves"]] == ["approval", None]
    assert left_out(planned) == {
        "cust_0002": "pinned", "cust_0003": "already_at_version", "cust_0006": "already_at_version",
        "cust_0009": "suspended", "cust_0010": "decommissioned",
    }  # fmt: skip
    assert planned["leftOutCounts"] == {"pinned": 1, "already_at_version": 2, "suspended": 1, "decommissioned": 1}
    assert (planned["total"], planned["skipped"]) == (8, 3)
    pinned = next(e for e in planned["leftOut"] if e["customerId"] == "cust_0002")
    assert "pinned to v1.1.0" in pinned["detail"] and "contract renewal" in pinned["detail"]
    # nothing was started or written
    assert snapshot(database_url) == before


def test_not_matching_customers_are_listed_too(fleet):
    _, planned = plan({**API_120, "customerIds": ["cust_0001", "cust_0002"]})
    assert [c["customerId"] for c in planned["waves"][0]["customers"]] == ["cust_0001"]
    reasons = left_out(planned)
    assert (reasons["cust_0002"], reasons["cust_0004"]) == ("pinned", "not_matching")
    _, by_label = plan({**API_120, "labels": {"canary": "true"}})
    assert left_out(by_label)["cust_0001"] == "not_matching"


def test_an_empty_label_filter_is_refused_never_read_as_everyone(fleet, fake_workflow, sql):
    """A generated client that lost the labels sent `"labels": {}`; read as "no filter" it planned the whole
    fleet. Both the plan and the deploy refuse it (422 naming labels) and nothing is written.

    Breakage tried: DeployRequest.labels without its empty-map check (min_length and the validator): the
    plan answers 200 with every active customer and the deploy starts an upgrade: both fail here."""
    for answer in (plan({**API_120, "labels": {}}), deploy({**API_120, "labels": {}})[:2]):
        code, refused = answer
        assert code == 422, refused
        assert [e["field"] for e in refused["errors"]] == ["labels"], refused
        assert "empty label filter would match every customer" in refused["errors"][0]["message"]
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 0


def test_a_plan_names_the_active_upgrade_a_deploy_would_be_refused_for(fleet, fake_workflow):
    assert deploy(API_120)[0] == 202
    _, planned = plan({**API_120, "version": "v1.3.0"})
    assert planned["activeUpgrade"] == "1"


def test_the_deploy_records_exactly_the_plan(fleet, fake_workflow, sql):
    request = {"component": "api", "version": "v1.2.0", "strategy": "batch", "batchSize": 2}
    _, planned = plan(request)
    code, started, _ = deploy(request)
    assert code == 202
    rows = sql("SELECT customer_id, wave, status, left_out, error FROM customer_upgrade_logs ORDER BY wave, id")
    in_waves = [[r["customer_id"] for r in rows if r["wave"] == w] for w in range(len(planned["waves"]))]
    assert in_waves == [[c["customerId"] for c in w["customers"]] for w in planned["waves"]]
    skipped = {r["customer_id"]: (r["left_out"], r["error"]) for r in rows if r["wave"] == -1}
    assert skipped == {e["customerId"]: (e["reason"], e["detail"]) for e in planned["leftOut"]
                       if e["reason"] in ("pinned", "already_at_version")}  # fmt: skip
    assert (started["total"], started["skipped"], started["waves"]) == (
        planned["total"], planned["skipped"], [w["size"] for w in planned["waves"]]
    )  # fmt: skip


# ------------------------------------------------------------------------- pins and already at version
def test_pinned_and_already_at_version_are_skipped_counted_and_visible(fleet, fake_workflow, sql):
    code, started, _ = deploy(API_120)
    assert code == 202
    assert (started["total"], started["waves"], started["skipped"]) == (8, [5], 3)
    assert started["leftOut"] == {"pinned": 1, "already_at_version": 2, "suspended": 1, "decommissioned": 1}
    assert "3 already" not in started["message"] and "2 already at v1.2.0" in started["message"]
    # the skipped rows are in no run: never in a manifest, never started
    assert (
        sql("SELECT count(*) AS n FROM customer_upgrade_logs WHERE left_out IS NOT NULL AND run_name IS NULL")[0]["n"]
        == 3
    )
    _, progress = status(started["upgradeId"])
    assert (progress["total"], progress["skipped"], progress["pending"]) == (8, 3, 5)
    assert progress["leftOut"] == {"pinned": 1, "already_at_version": 2}
    assert fake_workflow.started and len(fake_workflow.started) == 1


def test_include_pinned_upgrades_pinned_customers(fleet, fake_workflow):
    _, planned = plan({**API_120, "includePinned": True})
    assert "cust_0002" in [c["customerId"] for c in planned["waves"][0]["customers"]]
    assert "pinned" not in planned["leftOutCounts"]


def test_a_pin_to_the_target_version_or_an_expired_pin_leaves_nobody_out(fleet, sql):
    sql("UPDATE customer_pins SET version = 'v1.2.0'")
    assert "pinned" not in plan(API_120)[1]["leftOutCounts"]
    sql("UPDATE customer_pins SET version = 'v1.1.0', expires_at = NOW() - interval '1 minute'")
    assert "pinned" not in plan(API_120)[1]["leftOutCounts"]


def test_everyone_left_out_is_a_409_naming_why(fleet, fake_workflow, database_url):
    before = snapshot(database_url)
    code, refused, _ = deploy({**API_120, "customerIds": ["cust_0002", "cust_0003"]})
    assert (code, refused["error"]) == (409, "NoTargetCustomers")
    assert "1 pinned" in refused["message"] and "1 already at v1.2.0" in refused["message"]
    assert snapshot(database_url) == before
    assert plan({**API_120, "customerIds": ["cust_0002", "cust_0003"]})[1]["waves"] == []


# ----------------------------------------------------------------------------------------- idempotency
def test_the_same_key_and_body_get_the_first_answer(fleet, fake_workflow, sql):
    first = deploy(API_120, key="deploy-42")
    again = deploy(API_120, key="deploy-42")
    assert first[0] == again[0] == 202 and first[1] == again[1]
    assert again[2].get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first[2]
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 1 and len(fake_workflow.started) == 1
    # the same meaning written differently is the same body
    reordered = deploy({"strategy": "all", "version": "v1.2.0", "component": "api", "bakeSeconds": 0}, key="deploy-42")
    assert reordered[:2] == first[:2]


def test_the_same_key_with_another_body_is_a_422_that_says_so(fleet, fake_workflow, sql):
    deploy(API_120, key="deploy-42")
    code, refused, _ = deploy({**API_120, "version": "v1.3.0"}, key="deploy-42")
    assert (code, refused["error"]) == (422, "IdempotencyKeyReused")
    assert "Idempotency-Key 'deploy-42'" in refused["message"] and "different request body" in refused["message"]
    assert refused["message"] == (
        "Idempotency-Key 'deploy-42' was first used with a different request body; a different request needs a new key"
    )  # mutant killed: the message replaced (the checks above read parts of it)
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 1


def test_ten_concurrent_deploys_with_one_key_make_one_upgrade_and_ten_identical_answers(fleet, fake_workflow, sql):
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        # ten concurrent Lambda invocations: ten execution environments (module instances)
        answers = list(pool.map(lambda i: deploy(API_120, key="one-key", instance=i)[:2], range(10)))
    assert {json.dumps(a, sort_keys=True) for a in answers} == {json.dumps(answers[0], sort_keys=True)}
    assert answers[0][0] == 202
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 1
    assert len(fake_workflow.started) == 1


def test_a_failed_deploy_gives_its_key_back(fleet, fake_workflow, sql):
    fake_workflow.fail_start = True
    assert deploy(API_120, key="retry-me")[0] == 503
    fake_workflow.fail_start = False
    code, started, _ = deploy(API_120, key="retry-me")
    assert code == 202 and started["upgradeId"]
    assert sql("SELECT status, upgrade_id FROM idempotency_keys")[0] == {"status": "completed", "upgrade_id": 2}


def test_a_claim_is_held_60_seconds_and_the_answer_kept_for_the_ttl(fleet, fake_workflow, sql):
    """A claim whose request died is taken over after 60 s (longer than a deploy's 30 s Lambda); answers are
    remembered for IDEMPOTENCY_TTL_SECONDS, 24 h by default (mutant killed: LOCK_SECONDS 60 -> 61)."""
    deploy(API_120, key="held")
    held = sql(
        "SELECT extract(epoch FROM locked_until - created_at)::int AS lock,"
        " extract(epoch FROM expires_at - created_at)::int AS ttl FROM idempotency_keys"
    )
    assert held == [{"lock": 60, "ttl": 24 * 3600}]


@pytest.mark.parametrize("key", ["my key", ".starts-with-a-dot", "k" * 256, "ключ"])
def test_a_key_outside_the_documented_grammar_is_refused_and_starts_nothing(fleet, fake_workflow, sql, key):
    """Letters, digits, '.', '_', ':', '-', starting with a letter or digit, at most 255 characters (mutant
    killed: the key pattern dropped from the header's validation)."""
    code, refused, _ = deploy(API_120, key=key)
    assert code == 422 and "Idempotency-Key" in refused["message"], refused
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 0 and fake_workflow.started == []


def test_a_key_of_255_characters_of_the_grammar_is_accepted(fleet, fake_workflow, sql):
    assert deploy(API_120, key="K" + "a.b_c:d-" * 31 + "123456")[0] == 202


def test_a_second_claim_while_the_first_request_runs_is_told_to_retry(env):
    """What a copy gets while the first request with its key still runs (the API answers it with 409 after
    waiting up to 20 s). Mutant killed: the message replaced."""
    claims = factory.idempotency()
    assert claims.claim("caller", "busy-key", "deploy", request_hash(API_120), ttl_seconds=60) is None
    with pytest.raises(IdempotencyInProgress) as raised:
        claims.claim("caller", "busy-key", "deploy", request_hash(API_120), ttl_seconds=60)
    assert (
        str(raised.value)
        == "the first request with Idempotency-Key 'busy-key' is still running; retry in a few seconds"
    )


def test_keys_are_per_caller_and_expire(fleet, fake_workflow, sql):
    deploy(API_120, key="shared")
    sql("UPDATE idempotency_keys SET caller = 'someone-else'")
    sql("UPDATE system_upgrades SET status = 'completed'")
    assert deploy(API_120, key="shared")[1]["upgradeId"] == "2"  # not someone else's answer
    sql("UPDATE idempotency_keys SET expires_at = NOW() - interval '1 second'")
    sql("UPDATE system_upgrades SET status = 'completed'")
    assert deploy(API_120, key="shared")[1]["upgradeId"] == "3"  # expired: a new request


def test_a_resume_never_picks_up_the_customers_the_deploy_left_out(fleet, fake_workflow, sql):
    # Given a deploy that left three customers out and halted before anyone started
    _, started, _ = deploy(API_120)
    sql("UPDATE system_upgrades SET status = 'halted', halt_reason = 'wave 1 of 1: 1 of 5 customers failed'")
    sql("UPDATE upgrade_runs SET status = 'halted'")
    sql("UPDATE customer_upgrade_logs SET status = 'skipped' WHERE left_out IS NULL")
    # When it is resumed
    event = api_event("api_control_abort", path=f"/api/upgrades/{started['upgradeId']}/resume",
                      path_params={"upgradeId": started["upgradeId"]})  # fmt: skip
    event["resource"] = event["requestContext"]["resourcePath"] = "/api/upgrades/{upgradeId}/resume"
    event["body"] = None
    response = invoke("api_control", event)
    # Then only the five it had planned go on; the pinned and the already upgraded stay left out
    assert response["statusCode"] == 202, response["body"]
    assert body(response)["customers"] == 5
    left = sql("SELECT status, run_name FROM customer_upgrade_logs WHERE left_out IS NOT NULL")
    assert {(r["status"], r["run_name"]) for r in left} == {("skipped", None)}
