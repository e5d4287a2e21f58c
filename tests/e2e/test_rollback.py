"""Rolling one customer back, through the API, as its own execution of the real state machine."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import deploy, rollback

pytestmark = pytest.mark.e2e

OPERATION_LABEL = "upgrades.example.com/operation"

CUSTOMER_LABEL = "upgrades.example.com/customer-id"


def _rollback_jobs(cluster: Any) -> list[Any]:
    """Jobs that roll a customer back: `helm rollback` (exact) or a restore (`helm upgrade` of the old tag)."""
    return [job for job in cluster.created_jobs
            if job.manifest["metadata"]["labels"][OPERATION_LABEL] in ("rollback", "restore")]  # fmt: skip


def _argv(manifest: dict[str, Any]) -> list[str]:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    return list(container["command"]) + list(container["args"])


def _api_version(sql: Any, customer_id: str) -> dict[str, Any]:
    rows = sql("SELECT version, previous_version FROM customer_component_versions"
               " WHERE customer_id = %s AND component = 'api'", customer_id)  # fmt: skip
    assert len(rows) == 1, rows
    return rows[0]


def _upgraded(stack: Any, make_customers: Any, n: int, *, failing: int | None = None) -> tuple[list[str], str]:
    """n customers on api v1.1.0, upgraded to v1.2.0 with strategy all; `failing` index fails its Job."""
    ids = make_customers(n)
    for customer_id in ids:  # each customer's Helm release at revision 1 (namespace = release name)
        name = f"customer-{customer_id.removeprefix('cust_')}"
        stack.cluster.add_release(name, name, values={"api.image.tag": "v1.1.0"})
    if failing is not None:
        stack.cluster.fail_customers.add(ids[failing])
    started = deploy(component="api", version="v1.2.0", strategy="all", failureThreshold={"count": 1})
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    stack.cluster.fail_customers.clear()
    return ids, started["upgradeId"]


def test_rollback_of_one_customer_runs_helm_rollback_and_restores_its_version(stack, make_customers, sql):
    # Given 3 customers upgraded to v1.2.0, the last one's Job failing
    ids, uid = _upgraded(stack, make_customers, 3, failing=2)
    before = sql("SELECT completed_customers, failed_customers, status, completed_at FROM system_upgrades")[0]
    assert (before["completed_customers"], before["failed_customers"]) == (2, 1)
    assert _api_version(sql, ids[0])["version"] == "v1.2.0"
    jobs_before = len(stack.cluster.created_jobs)

    # When the first customer is rolled back
    code, data = rollback(uid, ids[0])

    # Then the request is accepted and names the execution that runs it
    assert code == 202, data
    assert (data["customerId"], data["namespace"], data["upgradeId"]) == (ids[0], "customer-0001", uid)
    assert data["toVersion"] == "v1.1.0"
    execution = stack.wait_execution(data["jobId"])
    # and exactly one rollback Job was created, running `helm rollback` with an argv list
    rollbacks = _rollback_jobs(stack.cluster)
    assert len(stack.cluster.created_jobs) == jobs_before + 1
    assert len(rollbacks) == 1
    job = rollbacks[0]
    assert job.manifest["metadata"]["labels"][CUSTOMER_LABEL] == ids[0]
    # (the release is still at the revision the upgrade produced: an exact helm rollback to the one before)
    assert _argv(job.manifest) == [
        "helm", "rollback", "customer-0001", "1", "--namespace", "customer-0001", "--wait", "--timeout", "600s",
        "--history-max", "10",
    ]  # fmt: skip
    # and helm's release went back to the revision before the upgrade
    history = stack.cluster.release_history("customer-0001", "customer-0001")
    assert [(rev, state) for rev, state, _ in history] == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert history[-1][2] == history[0][2]
    # and the log shows the rollback attempt, completed, with helm's output and the Job's name
    logged = stack.logs(uid, operation="rollback")
    assert logged["total"] == 1
    entry = logged["logs"][0]
    assert (entry["customer_id"], entry["operation"], entry["status"]) == (ids[0], "rollback", "completed")
    assert (entry["from_version"], entry["to_version"]) == ("v1.2.0", "v1.1.0")
    assert "Rollback was a success" in entry["output"]
    assert entry["error"] is None
    assert entry["job_name"] == job.name
    assert entry["started_at"] and entry["completed_at"]
    # and the version inventory of that customer (only) is back to the previous version
    assert _api_version(sql, ids[0]) == {"version": "v1.1.0", "previous_version": "v1.2.0"}
    assert _api_version(sql, ids[1])["version"] == "v1.2.0"
    # and the upgrade's own counters, status and completion time did not move
    after = sql("SELECT completed_customers, failed_customers, status, completed_at FROM system_upgrades")[0]
    assert after == before
    status = stack.status(uid)
    assert (status["completed"], status["failed"], status["rolledBack"]) == (2, 1, 1)
    assert status["status"] == "completed_with_failures"
    # and the upgrade's own rows are untouched
    upgrade_rows = stack.logs(uid, operation="upgrade")["logs"]
    assert [r["status"] for r in upgrade_rows] == ["completed", "completed", "failed"]
    # and the rollback's execution succeeded
    assert execution["status"] == "SUCCEEDED", execution


def test_second_rollback_of_the_same_customer_is_refused(stack, make_customers, sql):
    ids, uid = _upgraded(stack, make_customers, 2)
    code, data = rollback(uid, ids[0])
    assert code == 202, data
    execution = stack.wait_execution(data["jobId"])
    rows_before = sql("SELECT count(*) AS n FROM customer_upgrade_logs")[0]["n"]
    jobs_before = len(stack.cluster.created_jobs)

    code, again = rollback(uid, ids[0])

    assert code == 409, again
    assert "already rolled back" in again["message"]
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs")[0]["n"] == rows_before
    assert len(stack.cluster.created_jobs) == jobs_before
    assert stack.status(uid)["rolledBack"] == 1
    assert execution["status"] == "SUCCEEDED", execution


def test_rollback_of_a_customer_whose_upgrade_failed_is_refused(stack, make_customers, sql):
    ids, uid = _upgraded(stack, make_customers, 2, failing=1)
    jobs_before = len(stack.cluster.created_jobs)

    code, data = rollback(uid, ids[1])

    assert code == 409, data
    assert "nothing to roll back" in data["message"]
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs WHERE operation = 'rollback'")[0]["n"] == 0
    assert len(stack.cluster.created_jobs) == jobs_before
    assert _api_version(sql, ids[1])["version"] == "v1.1.0"


def test_rollback_of_a_customer_not_in_the_upgrade_is_404(stack, make_customers):
    ids, uid = _upgraded(stack, make_customers, 1)
    make_customers(1, start=50)

    code, data = rollback(uid, "cust_0050")

    assert code == 404, data
    assert rollback(str(int(uid) + 100), ids[0])[0] == 404


def _fail_rollbacks(manifest: dict[str, Any]) -> str | None:
    return "fail" if manifest["metadata"]["labels"][OPERATION_LABEL] == "rollback" else None


def test_rollback_whose_job_fails_is_recorded_failed_with_the_error(stack, make_customers, sql):
    ids, uid = _upgraded(stack, make_customers, 2)
    before = sql("SELECT completed_customers, failed_customers, status FROM system_upgrades")[0]
    stack.cluster.outcome = _fail_rollbacks

    code, data = rollback(uid, ids[0])

    assert code == 202, data
    execution = stack.wait_execution(data["jobId"])
    entry = stack.logs(uid, operation="rollback")["logs"][0]
    assert entry["status"] == "failed"
    assert "BackoffLimitExceeded" in entry["error"]
    assert 'Error: cannot patch "customer-0001-api" with kind Deployment' in entry["error"]  # helm's apply failed
    assert 'Error: cannot patch "customer-0001-api" with kind Deployment' in entry["output"]
    history = stack.cluster.release_history("customer-0001", "customer-0001")
    assert [(rev, state) for rev, state, _ in history] == [(1, "superseded"), (2, "superseded"), (3, "failed")]
    # the customer stays on the upgraded version; the upgrade's counters do not move
    assert _api_version(sql, ids[0])["version"] == "v1.2.0"
    assert sql("SELECT completed_customers, failed_customers, status FROM system_upgrades")[0] == before
    status = stack.status(uid)
    assert (status["completed"], status["failed"], status["rolledBack"]) == (2, 0, 0)
    assert execution["status"] == "SUCCEEDED", execution  # a failed helm rollback is recorded, not fatal


def test_rollback_can_be_retried_after_a_failed_rollback(stack, make_customers, sql):
    ids, uid = _upgraded(stack, make_customers, 1)
    stack.cluster.outcome = _fail_rollbacks
    code, first = rollback(uid, ids[0])
    assert code == 202, first
    executions = [stack.wait_execution(first["jobId"])]
    assert stack.logs(uid, operation="rollback")["logs"][0]["status"] == "failed"
    stack.cluster.outcome = None  # whatever broke helm is fixed

    code, second = rollback(uid, ids[0])

    assert code == 202, second
    assert second["jobId"] != first["jobId"]
    executions.append(stack.wait_execution(second["jobId"]))
    attempts = stack.logs(uid, operation="rollback")["logs"]
    assert [a["status"] for a in attempts] == ["failed", "completed"]
    # a second rollback ran, in a Job of its own: the release moved on since (a failed rollback revision),
    # so it restores the old tag with `helm upgrade`, keeping everything else
    jobs = _rollback_jobs(stack.cluster)
    assert len({job.name for job in jobs}) == 2
    assert [job.manifest["metadata"]["labels"][OPERATION_LABEL] for job in jobs] == ["rollback", "restore"]
    assert _api_version(sql, ids[0])["version"] == "v1.1.0"
    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
