"""The fleet end to end: customers found by discovery in the simulated cluster, the dry-run plan, then the
real deploy through the real ASL, with helm Jobs in the cluster. The plan must be what runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import call, continue_
from tests.conftest import body
from tests.support.events import api_event
from tests.support.functions import invoke

pytestmark = pytest.mark.e2e

SOON = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
CURRENT = {"api.image.tag": "v1.1.0", "dashboard.image.tag": "v1.9.0", "exporter.image.tag": "v1.0.0"}


def post(function: str, event_name: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
    response = invoke(function, api_event(event_name, body=payload))
    return response["statusCode"], body(response)


def customer_of(job: Any) -> str:
    return str(job.manifest["metadata"]["annotations"]["upgrades.example.com/customer-id"])


def test_the_plan_equals_the_waves_the_real_deploy_runs(stack, sql):
    # Given 12 customer releases in the cluster, two already at v1.2.0, found by discovery
    for n in range(1, 13):
        tag = "v1.2.0" if n in (3, 8) else "v1.1.0"
        stack.cluster.add_release(f"customer-{n:04d}", f"customer-{n:04d}", values={**CURRENT, "api.image.tag": tag})
    assert stack.runtime.sync()["counts"]["added"] == 12
    # and one customer pinned, one labelled canary
    event = api_event("api_customers_patch", path="/api/customers/cust_0005", path_params={"customerId": "cust_0005"},
                      body={"pins": {"api": {"reason": "customer freeze", "expiresAt": SOON}}})  # fmt: skip
    assert invoke("api_customers", event)["statusCode"] == 200
    sql("UPDATE customers SET labels = '{\"canary\": \"true\"}' WHERE id = 'cust_0011'")
    request = {"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 25, "maxConcurrency": 3}

    # When the plan is asked for, then the same request deployed and continued to the end
    code, planned = post("api_upgrades", "api_upgrades_plan", request)
    assert code == 200
    code, started = post("api_deploy", "api_deploy", request)
    assert code == 202, started
    stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    assert continue_(started["upgradeId"])[0] == 200
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then every wave ran exactly the plan's customers, in the plan's order of waves
    waves = [[c["customerId"] for c in w["customers"]] for w in planned["waves"]]
    assert waves[0] == ["cust_0011", "cust_0001", "cust_0002"]  # canary-labelled first; 25 % of 9
    rows = sql("SELECT customer_id, wave, status, left_out FROM customer_upgrade_logs ORDER BY wave, customer_id")
    ran = [sorted(r["customer_id"] for r in rows if r["wave"] == w) for w in range(len(waves))]
    assert ran == [sorted(w) for w in waves]
    assert {r["status"] for r in rows if r["wave"] >= 0} == {"completed"}
    jobs = [(job.index, customer_of(job)) for job in stack.cluster.created_jobs]
    assert sorted(c for _, c in jobs) == sorted(c for w in waves for c in w)  # one Job each, nobody else
    first_wave = [i for i, c in jobs if c in waves[0]]
    assert max(first_wave) < min(i for i, c in jobs if c not in waves[0])  # the canary wave went first

    # and everyone the plan left out was left out, with the same reason, the releases untouched
    skipped = {r["customer_id"]: r["left_out"] for r in rows if r["wave"] == -1}
    assert skipped == {e["customerId"]: e["reason"] for e in planned["leftOut"]}
    assert skipped == {"cust_0003": "already_at_version", "cust_0008": "already_at_version", "cust_0005": "pinned"}
    for customer in skipped:
        namespace = customer.replace("cust_", "customer-")
        assert [r for r, _, _ in stack.cluster.release_history(namespace, namespace)] == [1]
    status = stack.status(started["upgradeId"])
    assert (status["total"], status["completed"], status["skipped"], status["status"]) == (12, 9, 3, "completed")
    assert status["leftOut"] == {"already_at_version": 2, "pinned": 1}

    # and a sync afterwards finds the inventory in line with the releases: no drift
    assert stack.runtime.sync()["counts"]["drifted"] == 0


def test_a_sync_requested_through_the_api_runs_in_the_background(stack, sql):
    stack.cluster.add_release("customer-0001", "customer-0001", values=CURRENT)
    # When POST /api/customers/sync answers, the sync function runs asynchronously (Lambda's Event invocation)
    code, started = post("api_sync", "api_sync")
    assert code == 202 and started["status"] == "pending"
    path = f"/api/customers/sync/{started['syncId']}"

    def finished() -> bool:
        return call("api_customers", "api_customers_sync_status", path, {"syncId": started["syncId"]})[1]["status"] in (
            "completed",
            "failed",
        )

    stack.wait_for(finished)
    code, result = call("api_customers", "api_customers_sync_status", path, {"syncId": started["syncId"]})
    assert (result["status"], result["counts"]["added"], result["requestedBy"]) == (
        "completed", 1, "arn:aws:sts::123456789012:assumed-role/PlatformOperator/jane"
    )  # fmt: skip
    assert [r["id"] for r in sql("SELECT id FROM customers")] == ["cust_0001"]
