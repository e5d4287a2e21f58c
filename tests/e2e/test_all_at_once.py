from __future__ import annotations

import pytest

from tests.api.helpers import deploy

pytestmark = pytest.mark.e2e


def test_all_at_once_over_12_customers_with_one_failing_job(stack, make_customers, sql):
    # Given 12 customers, one of whose Helm Jobs will fail
    ids = make_customers(12)
    stack.cluster.fail_customers.add(ids[4])
    # When the upgrade is deployed with strategy all, tolerating one failure
    started = deploy(component="api", version="v1.2.0", strategy="all", failureThreshold={"count": 1})
    execution = stack.wait_execution(started["jobId"])
    # Then the execution succeeds and the status shows 11 completed and 1 failed, in a final status
    assert execution["status"] == "SUCCEEDED", execution
    status = stack.status(started["upgradeId"])
    assert (status["total"], status["completed"], status["failed"], status["inProgress"]) == (12, 11, 1, 0)
    assert status["status"] == "completed_with_failures"
    assert status["completedAt"] is not None and status["startedAt"] is not None
    # and the logs carry the helm output and the error of the failed customer
    failed = stack.logs(started["upgradeId"], status="failed")["logs"]
    assert [entry["customer_id"] for entry in failed] == [ids[4]]
    assert failed[0]["error"] and failed[0]["output"]
    completed = stack.logs(started["upgradeId"], status="completed")["logs"]
    assert len(completed) == 11
    assert all("has been upgraded" in entry["output"] for entry in completed)
    # and each entry says what the release held before and after, read from the release itself
    assert {(e["version_before"], e["version_after"], e["revision_before"], e["revision_after"], e["chart_version"])
            for e in completed} == {("v1.1.0", "v1.2.0", 1, 2, "1.5.0")}  # fmt: skip
    # (--atomic put the failed one back: revision 2 failed, revision 3 its rollback)
    assert (failed[0]["version_before"], failed[0]["version_after"], failed[0]["revision_after"]) == (
        "v1.1.0",
        "v1.1.0",
        3,
    )
    # and the counters equal the row counts, and the version inventory moved for the 11
    upgrade = sql("SELECT completed_customers, failed_customers FROM system_upgrades")[0]
    assert (upgrade["completed_customers"], upgrade["failed_customers"]) == (11, 1)
    versions = sql("SELECT customer_id, version, previous_version FROM customer_component_versions"
                   " WHERE component = 'api' ORDER BY customer_id")  # fmt: skip
    assert [v["version"] for v in versions if v["customer_id"] != ids[4]] == ["v1.2.0"] * 11
    assert [v["version"] for v in versions if v["customer_id"] == ids[4]] == ["v1.1.0"]
    # and exactly one Job per customer was created
    assert len(stack.cluster.created_jobs) == 12
