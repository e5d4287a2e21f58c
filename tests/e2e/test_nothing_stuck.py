"""Nothing ever stuck (issue 9): executions that end without our code are finished by the reconciler,
and a halted upgrade can be resumed; through the real state machine, PostgreSQL and the simulated cluster."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import deploy
from tests.e2e.invariants import assert_invariants
from tests.support.events import api_event
from tests.support.functions import invoke, load_function

pytestmark = pytest.mark.e2e
EVENTS = Path(__file__).resolve().parents[2] / "events"
FINAL = {"completed", "completed_with_failures", "failed", "halted", "aborted"}


def execution_event(stack: Any, name: str, status: str, error: str, cause: str) -> dict[str, Any]:
    """The EventBridge event Step Functions sends when an execution ends (events/ holds a real one)."""
    event = json.loads((EVENTS / "reconcile_runs_execution_failed.json").read_text())
    event["detail"].update(name=name, status=status, error=error, cause=cause,
                           executionArn=stack.runtime.execution_arn(name),
                           stateMachineArn=stack.runtime.state_machine_arn)  # fmt: skip
    return event


def reconcile(event: dict[str, Any]) -> dict[str, Any]:
    from upgradectl.local.functions import FakeContext

    return dict(load_function("reconcile_runs").lambda_handler(event, FakeContext("reconcile_runs")))


def stopped_mid_wave(stack: Any, make_customers: Any, n: int = 8) -> tuple[dict[str, Any], int]:
    """An upgrade whose execution is stopped while its first customers' Jobs run; the Jobs then end."""
    make_customers(n)
    stack.cluster.hold()
    started = deploy(component="api", version="v1.2.0", strategy="all", maxConcurrency=3)
    stack.wait_for(lambda: len(stack.cluster.created_jobs) >= 3)
    stack.runtime.sfn.stop_execution(executionArn=stack.runtime.execution_arn(started["jobId"]),
                                     error="Stopped", cause="stopped in the console")  # fmt: skip
    assert stack.wait_execution(started["jobId"])["status"] == "ABORTED"
    jobs = len(stack.cluster.created_jobs)
    stack.cluster.release()  # the helm Jobs that were running go on and end
    stack.wait_for(lambda: all(job.get("status", {}).get("completionTime") or job.get("status", {}).get("failed")
                               for job in stack.cluster.jobs().values()))  # fmt: skip
    return started, jobs


def assert_nothing_stuck(stack: Any, sql: Any, started: dict[str, Any], jobs: int) -> dict[str, Any]:
    status = stack.status(started["upgradeId"])
    assert status["status"] in FINAL, status
    assert status["inProgress"] == 0 and status["pending"] == 0, status
    # every customer accounted for: those whose Job ran got its real outcome, the others were skipped
    assert status["completed"] == jobs and status["skipped"] == status["total"] - jobs, status
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    assert_invariants(sql, stack.cluster, started["upgradeId"])
    # and a new deploy of that component is accepted
    again = deploy(component="api", version="v1.2.1", strategy="all")
    assert stack.wait_execution(again["jobId"])["status"] == "SUCCEEDED"
    return status


def test_a_stopped_execution_is_reconciled_from_its_event(stack, make_customers, sql):
    started, jobs = stopped_mid_wave(stack, make_customers)

    result = reconcile(execution_event(stack, started["jobId"], "ABORTED", "Stopped", "stopped in the console"))

    assert result["reconciled"] == [started["jobId"]]
    status = assert_nothing_stuck(stack, sql, started, jobs)
    assert status["haltReason"] == f"execution {started['jobId']} ended ABORTED (Stopped: stopped in the console)"
    assert status["attempts"][0]["status"] == "reconciled"


def test_when_the_event_is_lost_the_sweep_finds_the_run(stack, make_customers, sql):
    started, jobs = stopped_mid_wave(stack, make_customers)

    swept = stack.runtime.sweep(min_age_seconds=0)

    assert swept["reconciled"] == [started["jobId"]]
    assert_nothing_stuck(stack, sql, started, jobs)


def test_an_execution_that_hit_the_history_limit_is_reconciled(stack, make_customers, sql):
    # (simulated: the execution is stopped, and the event says what AWS says when the history is full)
    started, jobs = stopped_mid_wave(stack, make_customers)
    cause = "The execution reached the maximum number of history events (25000)."

    reconcile(execution_event(stack, started["jobId"], "FAILED", "States.Runtime", cause))

    status = assert_nothing_stuck(stack, sql, started, jobs)
    assert "States.Runtime: The execution reached the maximum number of history events" in status["haltReason"]


def test_when_finalize_run_keeps_failing_the_reconciler_ends_the_run(stack, make_customers, sql, monkeypatch):
    from upgrader.rollout import orchestration

    def broken(event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("the database refused the final update")

    monkeypatch.setattr(orchestration, "finalize_run", broken)
    make_customers(4)
    started = deploy(component="api", version="v1.2.0", strategy="all")
    execution = stack.wait_execution(started["jobId"])
    assert (execution["status"], execution.get("error")) == ("FAILED", "FinalizeRunFailed")
    assert stack.status(started["upgradeId"])["status"] == "in_progress"  # nothing told the database

    reconcile(execution_event(stack, started["jobId"], "FAILED", execution["error"], execution.get("cause", "")))

    status = stack.status(started["upgradeId"])
    assert status["status"] in FINAL and status["completed"] == 4, status
    monkeypatch.undo()
    again = deploy(component="api", version="v1.2.1", strategy="all")
    assert stack.wait_execution(again["jobId"])["status"] == "SUCCEEDED"


def resume(upgrade_id: str, payload: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    event = api_event(
        "api_control_abort", path=f"/api/upgrades/{upgrade_id}/resume", path_params={"upgradeId": upgrade_id}
    )
    event["resource"] = "/api/upgrades/{upgradeId}/resume"
    event["body"] = json.dumps(payload or {})
    response = invoke("api_control", event)
    return response["statusCode"], json.loads(response["body"])


def test_resume_after_a_threshold_halt_upgrades_only_the_customers_not_yet_done(stack, make_customers, sql):
    # Given a batch upgrade halted in its second wave by a failing customer
    ids = make_customers(9)
    stack.cluster.fail_customers.add(ids[3])
    started = deploy(component="api", version="v1.2.0", strategy="batch", batchSize=3, maxConcurrency=1)
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    halted = stack.status(started["upgradeId"])
    assert halted["status"] == "halted" and halted["failed"] == 1
    done_before = {r["customer_id"] for r in sql("SELECT customer_id FROM customer_upgrade_logs WHERE status IN"
                                                 " ('completed', 'failed')")}  # fmt: skip
    jobs_before = len(stack.cluster.created_jobs)
    stack.cluster.fail_customers.clear()

    # When it is resumed
    code, data = resume(started["upgradeId"], {"maxConcurrency": 3})

    # Then only the customers not yet done are upgraded, in a new execution of the same upgrade
    assert code == 202, data
    assert data["customers"] == 9 - len(done_before)
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"
    status = stack.status(started["upgradeId"])
    assert (status["status"], status["completed"], status["failed"]) == ("completed_with_failures", 8, 1), status
    assert [(a["attempt"], a["status"]) for a in status["attempts"]] == [(1, "halted"), (2, "completed_with_failures")]
    new_jobs = stack.cluster.created_jobs[jobs_before:]
    upgraded_now = {j.manifest["metadata"]["annotations"]["upgrades.example.com/customer-id"] for j in new_jobs}
    assert upgraded_now == set(ids) - done_before and len(new_jobs) == len(upgraded_now)
    # and the counters stay exact
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_the_kubernetes_api_unreachable_for_two_minutes_while_jobs_run(stack, make_customers, sql):
    # Given an upgrade whose first three helm Jobs run, one customer's helm failing
    ids = make_customers(6)
    stack.cluster.fail_customers.add(ids[0])
    stack.cluster.hold()
    started = deploy(component="api", version="v1.2.0", strategy="all", maxConcurrency=3,
                     failureThreshold={"count": 5})  # fmt: skip
    stack.wait_for(lambda: stack.cluster.running_jobs(started["upgradeId"]) == 3)

    # When the Kubernetes API is unreachable for two minutes while those Jobs run and end
    outage = stack.cluster.unreachable(120)
    ends = time.time() + 120
    stack.cluster.release()
    stack.wait_for(lambda: stack.cluster.running_jobs(started["upgradeId"]) == 0)
    assert outage.active  # the three Jobs ended behind the outage
    assert stack.wait_execution(started["jobId"], timeout=600)["status"] == "SUCCEEDED"

    # Then the other customers' Jobs were only created once the API was back, and every customer still
    # ends with its Job's real outcome: helm's own error for the failing one, the new version for the others
    assert len(stack.cluster.created_jobs) == 6
    assert all(job.time >= ends - 1 for job in stack.cluster.created_jobs[3:]), stack.cluster.created_jobs
    status = stack.status(started["upgradeId"])
    assert (status["status"], status["completed"], status["failed"]) == ("completed_with_failures", 5, 1), status
    logs = {row["customer_id"]: row for row in stack.logs(started["upgradeId"])["logs"]}
    assert "unreachable" not in (logs[ids[0]]["error"] or "") and logs[ids[0]]["version_after"] == "v1.1.0"
    for customer in ids[1:]:
        assert (logs[customer]["status"], logs[customer]["version_after"]) == ("completed", "v1.2.0"), logs[customer]
        assert inventory_of(sql, customer) == "v1.2.0"
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def inventory_of(sql: Any, customer_id: str) -> str:
    rows = sql("SELECT version FROM customer_component_versions WHERE customer_id = %s AND component = 'api'",
               customer_id)  # fmt: skip
    return str(rows[0]["version"])
