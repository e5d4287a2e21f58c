"""The progressive strategy through the real ASL, handlers, PostgreSQL and Kubernetes over HTTP:
cumulative steps, each followed by a manual or timed gate, the failure budget checked at every step."""

from __future__ import annotations

import pytest

from tests.api.helpers import continue_, deploy

pytestmark = pytest.mark.e2e


def test_manual_steps_wait_for_continue_after_each_step(stack, make_customers, sql):
    make_customers(20)
    started = deploy(component="api", version="v2.0.0", strategy="progressive", steps=[5, 25, 100])
    assert started["waves"] == [1, 4, 15] and started["strategy"] == "progressive"
    assert "3 steps" in started["message"] and "/continue" in started["message"]
    uid = started["upgradeId"]
    for done, wave in ((1, 0), (5, 1)):
        waiting = stack.wait_for_status(
            uid, lambda s, d=done: s["status"] == "awaiting_continue" and s["completed"] == d
        )
        assert (waiting["currentWave"], waiting["gate"], waiting["pending"]) == (wave + 1, "approval", 20 - done)
        assert len(stack.cluster.created_jobs) == done  # nothing of the next step started before /continue
        code, _ = continue_(uid)
        assert code == 200
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    final = stack.status(uid)
    assert (final["status"], final["completed"], final["totalWaves"]) == ("completed", 20, 3)
    assert final["parameters"]["steps"] == [5, 25, 100] and final["parameters"]["stepGate"] == "manual"
    waves = sql("SELECT wave, count(*) AS n FROM customer_upgrade_logs GROUP BY wave ORDER BY wave")
    assert [r["n"] for r in waves] == [1, 4, 15]
    assert continue_(uid)[0] == 409


def test_timed_steps_bake_then_go_on_without_continue(stack, make_customers):
    make_customers(8)
    started = deploy(component="api", version="v2.0.1", strategy="progressive", progression="linear",
                     stepGate="bake", bakeSeconds=1)  # fmt: skip
    assert started["waves"] == [1] * 8  # 10 % steps of 8 customers: the steps that add nobody merge away
    assert stack.wait_execution(started["jobId"], timeout=240)["status"] == "SUCCEEDED"
    final = stack.status(started["upgradeId"])
    assert (final["status"], final["completed"], final["awaitingContinue"]) == ("completed", 8, False)


def test_the_failure_budget_halts_a_middle_step(stack, make_customers, sql):
    ids = make_customers(20)
    stack.cluster.fail_customers.update({ids[3], ids[4]})  # both in the second step (customers 2..5)
    started = deploy(component="api", version="v2.0.2", strategy="progressive", steps=[5, 25, 100],
                     stepGate="bake", bakeSeconds=1, failureThreshold={"count": 1})  # fmt: skip
    assert stack.wait_execution(started["jobId"], timeout=240)["status"] == "SUCCEEDED"
    final = stack.status(started["upgradeId"])
    assert final["status"] == "halted"
    assert final["haltReason"].startswith("wave 2 of 3: 2 of 4 customers failed (tolerated: 1)")
    assert (final["completed"], final["failed"], final["skipped"]) == (3, 2, 15)
    # the third step never started a helm Job
    third = {r["customer_id"] for r in sql("SELECT customer_id FROM customer_upgrade_logs WHERE wave = 2")}
    created = {job.manifest["metadata"]["labels"]["upgrades.example.com/customer-id"]
               for job in stack.cluster.created_jobs}  # fmt: skip
    assert not third & created
