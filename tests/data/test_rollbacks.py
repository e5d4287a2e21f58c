"""Which customers a rollback may touch, decided from what each upgrade recorded from the release."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import control, deploy, rollback


def _record(sql: Any, upgrade_id: str, customer_id: str, status: str, before: str | None, after: str | None,
            revisions: tuple[int, int] = (1, 2), job: str | None = "helm-upgrade-x") -> None:  # fmt: skip
    sql(
        """
        UPDATE customer_upgrade_logs SET status = %s, version_before = %s, version_after = %s,
               revision_before = %s, revision_after = %s, job_name = %s, completed_at = NOW()
         WHERE upgrade_id = %s AND customer_id = %s AND operation = 'upgrade'
        """,
        status, before, after, revisions[0], revisions[1], job, int(upgrade_id), customer_id,
    )  # fmt: skip


def _finish(sql: Any, upgrade_id: str, status: str = "completed_with_failures") -> None:
    sql("UPDATE system_upgrades SET status = %s WHERE id = %s", status, int(upgrade_id))
    sql("UPDATE upgrade_runs SET status = 'ended' WHERE upgrade_id = %s AND kind = 'upgrade'", int(upgrade_id))


@pytest.fixture
def api_upgrade(make_customers, fake_workflow, sql):
    """cust_0001 completed, cust_0002 failed after helm succeeded (health check), cust_0003 failed and
    restored by --atomic, cust_0004 never started."""
    make_customers(4)
    uid = deploy()["upgradeId"]
    _record(sql, uid, "cust_0001", "completed", "v1.1.0", "v1.2.0")
    _record(sql, uid, "cust_0002", "failed", "v1.1.0", "v1.2.0")
    _record(sql, uid, "cust_0003", "failed", "v1.1.0", "v1.1.0", revisions=(1, 3))
    sql("UPDATE customer_upgrade_logs SET status = 'skipped' WHERE customer_id = 'cust_0004'")
    _finish(sql, uid)
    return uid


def test_a_customer_whose_health_check_failed_can_be_rolled_back(api_upgrade, sql):
    code, data = rollback(api_upgrade, "cust_0002")
    assert code == 202, data
    row = sql("SELECT * FROM customer_upgrade_logs WHERE id = %s", data["rollbackId"])[0]
    upgrade_row = sql("SELECT id FROM customer_upgrade_logs WHERE customer_id = 'cust_0002' AND operation = 'upgrade'")
    assert (row["from_version"], row["to_version"], row["rollback_of"]) == ("v1.2.0", "v1.1.0", upgrade_row[0]["id"])
    assert sql("SELECT kind, scope FROM upgrade_runs WHERE run_name = %s", data["jobId"]) == [
        {"kind": "rollback", "scope": "customer"}
    ]


@pytest.mark.parametrize(
    ("customer", "message"),
    [
        ("cust_0003", "without changing its release (api still at v1.1.0)"),
        ("cust_0004", "without changing its release"),
    ],
)
def test_a_customer_whose_release_was_not_changed_is_refused(api_upgrade, sql, customer, message):
    before = sql("SELECT count(*) AS n FROM customer_upgrade_logs")[0]["n"]
    code, data = rollback(api_upgrade, customer)
    assert code == 409 and message in data["message"], data
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs")[0]["n"] == before


def test_a_later_upgrade_of_the_same_component_is_named_and_never_reverted(api_upgrade, sql):
    later = deploy(version="v1.3.0", customerIds=["cust_0001"])["upgradeId"]
    _record(sql, later, "cust_0001", "completed", "v1.2.0", "v1.3.0", revisions=(2, 3))
    _finish(sql, later, "completed")
    code, data = rollback(api_upgrade, "cust_0001")
    assert code == 409
    assert f"upgraded again since, by upgrade {later} (v1.3.0, completed)" in data["message"]
    # once the later upgrade is rolled back itself, the earlier one can be
    assert rollback(later, "cust_0001")[0] == 202
    sql("UPDATE customer_upgrade_logs SET status = 'completed' WHERE operation = 'rollback'")
    assert rollback(api_upgrade, "cust_0001")[0] == 202


def test_an_upgrade_of_another_component_since_does_not_block(api_upgrade, sql):
    other = deploy(component="dashboard", version="v2.0.0", customerIds=["cust_0001"])["upgradeId"]
    _record(sql, other, "cust_0001", "completed", "v1.9.0", "v2.0.0", revisions=(2, 3))
    _finish(sql, other, "completed")
    assert rollback(api_upgrade, "cust_0001")[0] == 202


def test_rolled_back_and_open_rollbacks_are_refused(api_upgrade, sql):
    code, data = rollback(api_upgrade, "cust_0001")
    assert code == 202
    code, again = rollback(api_upgrade, "cust_0001")
    assert code == 409 and "being rolled back" in again["message"]
    sql("UPDATE customer_upgrade_logs SET status = 'completed' WHERE id = %s", data["rollbackId"])
    code, again = rollback(api_upgrade, "cust_0001")
    assert code == 409 and "already rolled back" in again["message"]


def test_the_whole_upgrade_rollback_takes_every_changed_customer_and_names_who_is_left_out(api_upgrade, sql):
    later = deploy(version="v1.3.0", customerIds=["cust_0002"])["upgradeId"]
    _record(sql, later, "cust_0002", "completed", "v1.2.0", "v1.3.0", revisions=(2, 3))
    _finish(sql, later, "completed")
    code, data = control("rollback", api_upgrade)
    assert code == 202, data
    assert data["customers"] == 1
    assert [c["customerId"] for c in data["leftOut"]] == ["cust_0002"]
    assert f"by upgrade {later}" in data["leftOut"][0]["reason"]
    rows = sql("SELECT customer_id FROM customer_upgrade_logs WHERE run_name = %s", data["jobId"])
    assert rows == [{"customer_id": "cust_0001"}]


def test_the_whole_upgrade_rollback_includes_a_failed_health_check(api_upgrade, sql):
    code, data = control("rollback", api_upgrade)
    assert code == 202, data
    rows = sql("SELECT customer_id FROM customer_upgrade_logs WHERE run_name = %s ORDER BY customer_id", data["jobId"])
    assert [r["customer_id"] for r in rows] == ["cust_0001", "cust_0002"]
    assert data["leftOut"] == []


def test_a_helm_run_whose_result_was_never_read_counts_as_changed(make_customers, fake_workflow, sql):
    make_customers(1)
    uid = deploy()["upgradeId"]
    _record(sql, uid, "cust_0001", "failed", "v1.1.0", None)  # helm ran, then the worker failed before reading
    _finish(sql, uid, "failed")
    assert rollback(uid, "cust_0001")[0] == 202
