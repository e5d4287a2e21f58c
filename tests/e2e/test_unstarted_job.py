"""A helm Job that exists but has not started (no status.startTime, no pod: the Job controller has not
picked it up) is not an ended Job: when its execution dies, the reconciler keeps the customer's lease
until the Job really runs and ends, then records its real outcome. Through the real state machine,
PostgreSQL and the simulated cluster holding the Jobs unstarted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import deploy
from tests.e2e.invariants import assert_invariants
from tests.e2e.test_nothing_stuck import execution_event, reconcile

pytestmark = pytest.mark.e2e


def _leases(sql: Any) -> list[int]:
    return [r["log_id"] for r in sql("SELECT log_id FROM customer_leases ORDER BY log_id")]


def test_a_job_not_started_yet_keeps_its_lease_until_it_really_ends(stack, make_customers, sql):
    """Breakage tried: `settle_orphans` settling every Job not "running" (`if state.phase == "running"`):
    the unstarted Jobs were recorded failed and their leases given back while they could still run helm;
    this test failed. Also tried: the gateway reading a Job without startTime as "missing": failed too."""
    # Given an upgrade whose helm Jobs the Job controller has not started (no startTime, no pod)
    make_customers(2)
    stack.cluster.unstarted_when = lambda manifest: True
    started = deploy(component="api", version="v1.2.0", strategy="all", maxConcurrency=2)
    uid, name = started["upgradeId"], started["jobId"]
    stack.wait_for(lambda: len(stack.cluster.jobs()) == 2)
    assert all(not job.get("status") for job in stack.cluster.jobs().values())
    rows = {r["customer_id"]: r["id"] for r in sql("SELECT id, customer_id FROM customer_upgrade_logs")}
    stack.wait_for(lambda: _leases(sql) == sorted(rows.values()))

    # When its execution is stopped in the console and the reconciler runs (the event, then a sweep)
    stack.runtime.sfn.stop_execution(executionArn=stack.runtime.execution_arn(name), error="Stopped",
                                     cause="stopped in the console")  # fmt: skip
    assert stack.wait_execution(name)["status"] == "ABORTED"
    result = reconcile(execution_event(stack, name, "ABORTED", "Stopped", "stopped in the console"))
    swept = stack.runtime.sweep(min_age_seconds=0)

    # Then the run is ended, but neither customer is settled: their Jobs may still run helm
    assert result["reconciled"] == [name]
    assert sorted(result["stillRunning"]) == sorted(swept["stillRunning"]) == sorted(rows.values())
    assert result["settled"] == swept["settled"] == []
    assert {r["status"] for r in sql("SELECT status FROM customer_upgrade_logs")} == {"in_progress"}
    assert _leases(sql) == sorted(rows.values())

    # When the Job controller starts them and helm ends
    stack.cluster.unstarted_when = None
    stack.wait_for(
        lambda: all((job.get("status") or {}).get("completionTime") for job in stack.cluster.jobs().values())
    )
    swept = stack.runtime.sweep(min_age_seconds=0)

    # Then the next sweep records their real outcome and gives the leases back
    assert sorted(swept["settled"]) == sorted(rows.values())
    logs = sql("SELECT status, version_after, output FROM customer_upgrade_logs")
    assert [(r["status"], r["version_after"]) for r in logs] == [("completed", "v1.2.0")] * 2
    assert all("recorded by the reconciler" in r["output"] for r in logs)
    assert _leases(sql) == []
    status = stack.status(uid)
    assert (status["completed"], status["failed"], status["inProgress"]) == (2, 0, 0), status
    assert_invariants(sql, stack.cluster, uid)
