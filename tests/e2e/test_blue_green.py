"""Blue-green per customer (issue 12, item 4), through the real state machine, the real handlers,
PostgreSQL and the simulated cluster running the sample chart `charts/customer-stack-bluegreen`.

The contract (docs/blue-green.md): per component two slots; the upgrade puts the new version on the idle
slot, waits until that slot is healthy, then switches the Service to it; a rollback switches back at once
(no image pulled); the old slot stays until the next upgrade or a finalize.
"""

from __future__ import annotations

from typing import Any

import pytest
from upgrader.cluster.release import parse_release

from tests.api.helpers import control, deploy, rollback
from tests.e2e.invariants import assert_invariants
from tests.support.events import api_event
from tests.support.functions import invoke
from upgradectl.local.cluster import SimulatedCluster

pytestmark = pytest.mark.e2e

BLUEGREEN = "customer-stack-bluegreen"
OPERATION = "upgrades.example.com/operation"
CUSTOMER = "upgrades.example.com/customer-id"
HEALTH = {"httpPath": "/healthz", "timeoutSeconds": 10}


def release_of(customer_id: str) -> str:
    return f"customer-{customer_id.removeprefix('cust_')}"


@pytest.fixture
def bluegreen_customers(make_customers: Any, cluster: SimulatedCluster) -> Any:
    """Customers whose release runs the blue-green sample chart (api v1.1.0 on blue, green empty)."""

    def make(n: int, start: int = 1) -> list[str]:
        ids = make_customers(n, start=start)
        for cid in ids:
            cluster.add_release(release_of(cid), release_of(cid), chart_name=BLUEGREEN)  # replaces the plain one
        return ids

    return make


def api_slots(cluster: SimulatedCluster, customer_id: str) -> dict[str, Any]:
    """What the customer's release holds for api now, read from Helm's own record."""
    name = release_of(customer_id)
    record = cluster.release_record(name, name)
    assert record is not None
    slots = parse_release(record).slots_of("api")
    assert slots is not None
    return {"active": slots.active, "tags": slots.tags}


def jobs_of(cluster: SimulatedCluster, customer_id: str) -> list[tuple[str, list[str]]]:
    """(operation, helm args) of every Job created for the customer, in creation order."""
    return [
        (job.manifest["metadata"]["labels"][OPERATION], job.manifest["spec"]["template"]["spec"]["containers"][0]["args"])
        for job in cluster.created_jobs
        if job.manifest["metadata"]["annotations"][CUSTOMER] == customer_id
    ]  # fmt: skip


def deployment(cluster: SimulatedCluster, customer_id: str, slot: str) -> dict[str, Any] | None:
    return cluster.workload(release_of(customer_id), release_of(customer_id), f"api-{slot}")


def generation(cluster: SimulatedCluster, customer_id: str, slot: str) -> int:
    found = deployment(cluster, customer_id, slot)
    assert found is not None
    return int(found["metadata"]["generation"])


def inventory(sql: Any, customer_id: str) -> str:
    [row] = sql("SELECT version FROM customer_component_versions WHERE customer_id = %s AND component = 'api'",
                customer_id)  # fmt: skip
    return str(row["version"])


def finished(stack: Any, started: dict[str, Any]) -> dict[str, Any]:
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    return stack.status(started["upgradeId"])


def test_an_upgrade_goes_onto_the_idle_slot_then_switches(stack, bluegreen_customers, sql):
    ids = bluegreen_customers(2)

    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True, healthCheck=HEALTH)
    status = finished(stack, started)

    assert (status["completed"], status["failed"], status["blueGreen"]) == (2, 0, True)
    for cid in ids:
        # the new version runs on green and green serves; blue still runs the old version (instant rollback)
        assert api_slots(stack.cluster, cid) == {"active": "green", "tags": {"blue": "v1.1.0", "green": "v1.2.0"}}
        # two helm steps, each one value, on the chart the release runs: the slot, then the switch
        [(first, slot_args), (second, switch_args)] = jobs_of(stack.cluster, cid)
        assert (first, second) == ("slot", "switch")
        assert slot_args[slot_args.index("--set-string") + 1] == "api.slots.green.tag=v1.2.0"
        assert switch_args[switch_args.index("--set-string") + 1] == "api.activeSlot=green"
        for args in (slot_args, switch_args):
            assert args[2] == f"oci://registry.example.com/charts/{BLUEGREEN}"
            assert "--reset-then-reuse-values" in args and args[args.index("--version") + 1] == "2.0.0"
        green, blue = deployment(stack.cluster, cid, "green"), deployment(stack.cluster, cid, "blue")
        assert green is not None and blue is not None
        assert green["metadata"]["labels"]["upgrades.example.com/active"] == "true"
        assert blue["metadata"]["labels"]["upgrades.example.com/active"] == "false"
        assert green["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.2.0")
        # the log and the inventory say what the active slot runs
        [row] = stack.logs(started["upgradeId"], customerId=cid)["logs"]
        assert (row["status"], row["version_before"], row["version_after"]) == ("completed", "v1.1.0", "v1.2.0")
        assert "onto the idle slot green" in row["output"] and "--- switch ---" in row["output"]
        assert inventory(sql, cid) == "v1.2.0"
    assert_invariants(sql, stack.cluster, started["upgradeId"])

    # The next upgrade goes onto blue, the idle slot now
    again = deploy(component="api", version="v1.3.0", strategy="all", blueGreen=True)
    assert finished(stack, again)["completed"] == 2
    assert api_slots(stack.cluster, ids[0]) == {"active": "blue", "tags": {"blue": "v1.3.0", "green": "v1.2.0"}}


def test_an_idle_slot_that_is_not_healthy_is_never_switched_to(stack, bluegreen_customers, sql):
    # Given three customers: the first's new version answers 503 on /healthz, the second's pods never
    # get ready (helm --wait fails, --atomic undoes the step), the third is fine
    ids = bluegreen_customers(3)
    stack.cluster.probe_unhealthy_customers.add(ids[0])
    stack.cluster.unhealthy_customers.add(ids[1])

    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True, healthCheck=HEALTH,
                     failureThreshold={"count": 2})  # fmt: skip
    status = finished(stack, started)

    assert (status["completed"], status["failed"]) == (1, 2)
    rows = {r["customer_id"]: r for r in stack.logs(started["upgradeId"])["logs"]}
    # the probed slot failed its health check: nothing switched, blue serves, green holds the unused version
    assert rows[ids[0]]["status"] == "failed"
    assert "idle slot green" in rows[ids[0]]["error"] and "HTTP health check /healthz failed" in rows[ids[0]]["error"]
    assert "nothing switched" in rows[ids[0]]["error"]
    assert api_slots(stack.cluster, ids[0]) == {"active": "blue", "tags": {"blue": "v1.1.0", "green": "v1.2.0"}}
    # the slot that never got ready was undone by helm itself: green is empty again
    assert rows[ids[1]]["status"] == "failed" and "nothing switched" in rows[ids[1]]["error"]
    assert api_slots(stack.cluster, ids[1]) == {"active": "blue", "tags": {"blue": "v1.1.0", "green": ""}}
    # neither got a switch Job; the healthy one did
    assert [op for op, _ in jobs_of(stack.cluster, ids[0])] == ["slot"]
    assert [op for op, _ in jobs_of(stack.cluster, ids[1])] == ["slot"]
    assert [op for op, _ in jobs_of(stack.cluster, ids[2])] == ["slot", "switch"]
    assert (inventory(sql, ids[0]), inventory(sql, ids[1]), inventory(sql, ids[2])) == ("v1.1.0", "v1.1.0", "v1.2.0")
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_an_unhealthy_idle_slot_with_auto_rollback_is_undone_exactly(stack, bluegreen_customers):
    [cid] = bluegreen_customers(1)
    stack.cluster.probe_unhealthy_customers.add(cid)

    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True, healthCheck=HEALTH,
                     autoRollback=True)  # fmt: skip
    finished(stack, started)

    [row] = stack.logs(started["upgradeId"])["logs"]
    assert row["status"] == "rolled_back" and "nothing switched" in row["error"]
    # helm rollback to the revision before the slot step: green is empty again, blue never stopped serving
    assert api_slots(stack.cluster, cid) == {"active": "blue", "tags": {"blue": "v1.1.0", "green": ""}}
    assert [op for op, _ in jobs_of(stack.cluster, cid)] == ["slot", "rollback"]


def test_a_rollback_switches_back_at_once_without_pulling_an_image(stack, bluegreen_customers, sql):
    ids = bluegreen_customers(2)
    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True)
    finished(stack, started)
    generations = {slot: generation(stack.cluster, ids[0], slot) for slot in ("blue", "green")}

    code, data = rollback(started["upgradeId"], ids[0])

    assert code == 202, data
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"
    entry = next(
        e for e in stack.logs(started["upgradeId"], operation="rollback")["logs"] if e["id"] == data["rollbackId"]
    )
    assert entry["status"] == "completed", entry
    assert (entry["version_before"], entry["version_after"]) == ("v1.2.0", "v1.1.0")
    assert "switching api back to slot blue" in entry["output"]
    # one switch Job: the Service follows blue again; both slots keep their versions and their pods
    assert jobs_of(stack.cluster, ids[0])[-1][0] == "switch"
    assert jobs_of(stack.cluster, ids[0])[-1][1][jobs_of(stack.cluster, ids[0])[-1][1].index("--set-string") + 1] == (
        "api.activeSlot=blue"
    )
    assert api_slots(stack.cluster, ids[0]) == {"active": "blue", "tags": {"blue": "v1.1.0", "green": "v1.2.0"}}
    after = {slot: generation(stack.cluster, ids[0], slot) for slot in ("blue", "green")}
    assert after == generations  # no new rollout anywhere: nothing was pulled
    assert inventory(sql, ids[0]) == "v1.1.0" and inventory(sql, ids[1]) == "v1.2.0"
    assert api_slots(stack.cluster, ids[1])["active"] == "green"  # the other customer is untouched


def test_finalize_old_slot_removes_the_previous_slot_after_the_switch(stack, bluegreen_customers, sql):
    [cid] = bluegreen_customers(1)

    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True, finalizeOldSlot=True)
    assert finished(stack, started)["completed"] == 1

    # three steps under one lease: the slot, the switch, then the old slot's tag emptied
    assert [op for op, _ in jobs_of(stack.cluster, cid)] == ["slot", "switch", "finalize"]
    _, args = jobs_of(stack.cluster, cid)[-1]
    assert args[args.index("--set-string") + 1] == "api.slots.blue.tag="
    assert api_slots(stack.cluster, cid) == {"active": "green", "tags": {"blue": "", "green": "v1.2.0"}}
    assert deployment(stack.cluster, cid, "blue") is None and deployment(stack.cluster, cid, "green") is not None
    [row] = stack.logs(started["upgradeId"])["logs"]
    assert "--- switch ---" in row["output"] and "--- finalize ---" in row["output"]
    assert (row["version_before"], row["version_after"]) == ("v1.1.0", "v1.2.0") and inventory(sql, cid) == "v1.2.0"

    # and a rollback has nothing to switch back to: it says so and changes nothing
    code, data = rollback(started["upgradeId"], cid)
    assert code == 202, data
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"
    entry = next(
        e for e in stack.logs(started["upgradeId"], operation="rollback")["logs"] if e["id"] == data["rollbackId"]
    )
    assert entry["status"] == "skipped" and "slot blue holds nothing (finalized)" in entry["error"]
    assert api_slots(stack.cluster, cid)["active"] == "green"


def test_an_abort_after_the_slot_step_switches_nothing(stack, bluegreen_customers, sql):
    # Given a blue-green upgrade whose slot step is still running
    [cid] = bluegreen_customers(1)
    stack.cluster.hold()
    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True)
    stack.wait_for(lambda: [op for op, _ in jobs_of(stack.cluster, cid)] == ["slot"])

    # When the upgrade is aborted, then the slot step finishes
    code, data = control("abort", started["upgradeId"], {"reason": "wrong build"})
    assert code == 202, data
    stack.cluster.release()
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then the customer is not switched: the new version sits unused on green, blue serves
    [row] = stack.logs(started["upgradeId"])["logs"]
    assert row["status"] == "skipped" and row["error"].startswith("not switched: ")
    assert "wrong build" in row["error"]
    assert [op for op, _ in jobs_of(stack.cluster, cid)] == ["slot"]
    assert api_slots(stack.cluster, cid) == {"active": "blue", "tags": {"blue": "v1.1.0", "green": "v1.2.0"}}
    assert inventory(sql, cid) == "v1.1.0"


def test_finalize_old_slot_needs_blue_green():
    request = {"component": "api", "version": "v1.2.0", "strategy": "all", "finalizeOldSlot": True}
    response = invoke("api_deploy", api_event("api_deploy", body=request))
    assert response["statusCode"] == 422 and "finalizeOldSlot only goes with blueGreen" in response["body"]


def test_a_rollback_after_the_old_slot_was_finalized_says_there_is_nothing_to_switch_back_to(
    stack, bluegreen_customers
):
    [cid] = bluegreen_customers(1)
    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True)
    finished(stack, started)
    # the old slot was finalized behind the upgrade's back: blue's tag emptied (its Deployment removed)
    name = release_of(cid)
    stack.cluster.add_release(name, name, chart_name=BLUEGREEN, revision=4,
                              values={"api.slots.blue.tag": "", "api.slots.green.tag": "v1.2.0", "api.activeSlot": "green"})  # fmt: skip
    assert deployment(stack.cluster, cid, "blue") is None

    code, data = rollback(started["upgradeId"], cid)

    assert code == 202, data
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"
    entry = next(
        e for e in stack.logs(started["upgradeId"], operation="rollback")["logs"] if e["id"] == data["rollbackId"]
    )
    assert entry["status"] == "skipped"
    assert "slot blue holds nothing (finalized)" in entry["error"]
    assert api_slots(stack.cluster, cid)["active"] == "green"


def test_blue_green_and_plain_releases_are_never_confused(stack, make_customers, bluegreen_customers, sql):
    # A blue-green deploy on a plain release, and a plain deploy on a blue-green release: both refused per
    # customer with the reason, and neither release changed (an in-place tag would not be read by the chart)
    [plain] = make_customers(1, start=1)
    [slotted] = bluegreen_customers(1, start=2)

    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True, failureThreshold={"count": 1},
                     customerIds=[plain])  # fmt: skip
    finished(stack, started)
    [row] = stack.logs(started["upgradeId"])["logs"]
    assert row["status"] == "failed" and "does not follow the blue-green contract" in row["error"]

    started = deploy(component="api", version="v1.2.0", strategy="all", customerIds=[slotted])
    finished(stack, started)
    [row] = stack.logs(started["upgradeId"])["logs"]
    assert row["status"] == "failed" and "deploy with blueGreen" in row["error"]
    assert api_slots(stack.cluster, slotted) == {"active": "blue", "tags": {"blue": "v1.1.0", "green": ""}}
    assert jobs_of(stack.cluster, plain) == [] and jobs_of(stack.cluster, slotted) == []
