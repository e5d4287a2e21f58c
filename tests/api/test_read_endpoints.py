from __future__ import annotations

import pytest

from tests.api.helpers import call, deploy, logs, status

SPEC_STATUS_FIELDS = {
    "upgradeId", "component", "version", "strategy", "total", "completed", "failed", "inProgress",
    "status", "startedAt", "completedAt",
}  # fmt: skip
SPEC_LOG_FIELDS = {
    "id", "customer_id", "component", "from_version", "to_version", "status", "started_at", "completed_at",
    "output", "error",
}  # fmt: skip


def test_status_has_the_spec_fields_and_counts_from_rows(make_customers, fake_workflow, sql):
    make_customers(6)
    upgrade = deploy(strategy="canary", canaryPercent=50)
    uid = upgrade["upgradeId"]
    sql("UPDATE system_upgrades SET status='in_progress', started_at='2025-10-22T17:00:00' WHERE id=%s", int(uid))
    sql("UPDATE customer_upgrade_logs SET status='completed' WHERE customer_id IN ('cust_0001','cust_0002')")
    sql("UPDATE customer_upgrade_logs SET status='failed' WHERE customer_id = 'cust_0003'")
    sql("UPDATE customer_upgrade_logs SET status='in_progress' WHERE customer_id = 'cust_0004'")
    code, data = status(uid)
    assert code == 200
    assert set(data) >= SPEC_STATUS_FIELDS
    assert (data["total"], data["completed"], data["failed"], data["inProgress"], data["pending"]) == (6, 2, 1, 1, 2)
    assert data["status"] == "in_progress"
    assert data["startedAt"] == "2025-10-22T17:00:00.000Z"
    assert data["completedAt"] is None
    assert data["upgradeId"] == uid and data["version"] == "v1.2.0" and data["strategy"] == "canary"
    assert data["totalWaves"] == 2 and data["jobId"] == upgrade["jobId"]


def test_status_of_unknown_upgrade_is_404(env):
    code, data = status("987654")
    assert code == 404 and "987654" in data["message"]


def test_logs_have_spec_fields_filter_and_pages(make_customers, fake_workflow, sql):
    make_customers(7)
    uid = deploy()["upgradeId"]
    sql("UPDATE customer_upgrade_logs SET status='failed', error='boom' WHERE customer_id IN ('cust_0002','cust_0005')")
    code, data = logs(uid)
    assert code == 200
    assert data["upgradeId"] == uid and data["count"] == 7 and len(data["logs"]) == 7
    assert set(data["logs"][0]) >= SPEC_LOG_FIELDS
    code, failed = logs(uid, status="failed")
    assert [entry["customer_id"] for entry in failed["logs"]] == ["cust_0002", "cust_0005"]
    assert failed["logs"][0]["error"] == "boom"
    code, page = logs(uid, limit="3", offset="3")
    assert (page["count"], page["total"], page["nextOffset"]) == (3, 7, 6)
    assert [e["customer_id"] for e in page["logs"]] == ["cust_0004", "cust_0005", "cust_0006"]
    code, last = logs(uid, limit="3", offset="6")
    assert last["count"] == 1 and last["nextOffset"] is None


def test_logs_of_unknown_upgrade_is_404(env):
    code, _ = logs("424242")
    assert code == 404


def test_list_is_newest_first_with_filters_and_pages(make_customers, fake_workflow, sql):
    make_customers(2)
    first = deploy(component="api")["upgradeId"]
    second = deploy(component="dashboard")["upgradeId"]
    third = deploy(component="exporter")["upgradeId"]
    code, data = call("api_upgrades", "api_upgrades_list", "/api/upgrades", {}, {})
    assert code == 200
    assert [u["upgradeId"] for u in data["upgrades"]] == [third, second, first]
    code, only = call("api_upgrades", "api_upgrades_list", "/api/upgrades", {}, {"component": "dashboard"})
    assert [u["upgradeId"] for u in only["upgrades"]] == [second]
    code, page = call("api_upgrades", "api_upgrades_list", "/api/upgrades", {}, {"limit": "2"})
    assert page["nextBefore"] == second
    code, older = call("api_upgrades", "api_upgrades_list", "/api/upgrades", {}, {"before": second})
    assert [u["upgradeId"] for u in older["upgrades"]] == [first]
    code, bad = call("api_upgrades", "api_upgrades_list", "/api/upgrades", {}, {"status": "bogus"})
    assert code == 422


@pytest.mark.parametrize("final", ["rolled_back", "rollback_incomplete"])
def test_list_filters_by_the_statuses_a_whole_upgrade_rollback_leaves(final, make_customers, fake_workflow, sql):
    """Breakage tried: the route's status Literal without the rollback statuses (as before: a 422) fails here."""
    make_customers(2)
    rolled = deploy(component="api")["upgradeId"]
    other = deploy(component="dashboard")["upgradeId"]
    sql("UPDATE system_upgrades SET status = %s WHERE id = %s", final, int(rolled))
    sql("UPDATE system_upgrades SET status = 'completed' WHERE id = %s", int(other))
    code, found = call("api_upgrades", "api_upgrades_list", "/api/upgrades", {}, {"status": final})
    assert code == 200, found
    assert [(u["upgradeId"], u["status"]) for u in found["upgrades"]] == [(rolled, final)]


def test_queue_stats_and_job(make_customers, fake_workflow):
    make_customers(2)
    job = deploy()["jobId"]
    code, stats = call("api_queue", "api_queue_stats", "/api/queue/stats", {})
    assert code == 200
    assert {"waiting", "active", "completed", "failed", "delayed"} <= set(stats)
    assert stats["waiting"] == 1  # recorded, not yet picked up by the state machine
    code, data = call("api_queue", "api_queue_job", f"/api/queue/jobs/{job}", {"jobId": job})
    assert code == 200 and data["id"] == job and data["state"] == "active"
    assert data["data"]["upgradeId"] == int(job.split("-")[1])
    code, missing = call(
        "api_queue", "api_queue_job", "/api/queue/jobs/upgrade-999-ffffffff", {"jobId": "upgrade-999-ffffffff"}
    )
    assert code == 404
