"""A whole-upgrade rollback records its rows in one statement: each with its own wave, source row and attempt."""

from __future__ import annotations

from typing import Any

from upgrader import factory

from tests.api.helpers import deploy


def _completed_upgrade(make_customers: Any, sql: Any, n: int) -> int:
    make_customers(n)
    uid = int(deploy(component="api", version="v1.2.0", strategy="batch", batchSize=2)["upgradeId"])
    sql("UPDATE customer_upgrade_logs SET status = 'completed', job_name = 'helm-' || id, revision_before = 1,"
        " revision_after = 2, version_before = 'v1.1.0', version_after = 'v1.2.0' WHERE upgrade_id = %s", uid)  # fmt: skip
    sql("UPDATE system_upgrades SET status = 'completed' WHERE id = %s", uid)
    return uid


def test_rows_carry_last_wave_first_their_source_row_and_the_next_attempt(make_customers, fake_workflow, sql):
    # Given a completed upgrade of 3 customers in 2 waves (2 + 1)
    uid = _completed_upgrade(make_customers, sql, 3)
    upgraded = {r["customer_id"]: r for r in sql(
        "SELECT id, customer_id, wave FROM customer_upgrade_logs WHERE upgrade_id = %s", uid)}  # fmt: skip
    rollbacks = factory.rollbacks()
    # When the whole upgrade is rolled back
    rows, left_out = rollbacks.create_upgrade_rollback(uid, requested_by="ops", run_name="rollback-a")
    # Then every customer has a pending rollback row of its own upgrade row, last wave first, attempt 1
    assert left_out == []
    assert sorted((r.customer_id, r.wave, r.rollback_of, r.attempt, r.from_version, r.to_version,
                   r.status, r.run_name) for r in rows) == sorted(
        (cid, 1 - u["wave"], u["id"], 1, "v1.2.0", "v1.1.0", "pending", "rollback-a") for cid, u in upgraded.items()
    )  # fmt: skip
    # and when that rollback failed and the whole upgrade is rolled back again
    sql("UPDATE customer_upgrade_logs SET status = 'failed' WHERE run_name = 'rollback-a'")
    sql("UPDATE upgrade_runs SET status = 'ended' WHERE run_name = 'rollback-a'")
    again, _ = rollbacks.create_upgrade_rollback(uid, requested_by="ops", run_name="rollback-b")
    # then each customer's new row is its attempt 2 (its helm Job gets a name of its own)
    assert sorted((r.customer_id, r.attempt) for r in again) == sorted((cid, 2) for cid in upgraded)
