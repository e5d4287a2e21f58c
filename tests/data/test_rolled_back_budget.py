"""A customer rolled back automatically (its health check failed after helm succeeded, or helm --atomic
restored the release) is a failure of its wave: the in-wave failure budget counts it, in the transaction
that records it and again under the next customer's lease. Against the real PostgreSQL."""

from __future__ import annotations

from typing import Any

from upgrader import factory

from tests.api.helpers import deploy

ROLLED_BACK = "HTTP health check /healthz failed: 503; rolled back to revision 1"


def _rows(sql: Any, upgrade_id: str) -> list[int]:
    rows = sql("SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s ORDER BY customer_id", int(upgrade_id))
    return [int(r["id"]) for r in rows]


def test_a_rolled_back_customer_over_the_budget_halts_in_the_transaction_that_records_it(
    make_customers, fake_workflow, sql
):
    """Breakage tried: `may_halt = status in ("failed",)` in `RunRepository._finish_customer`: no halt
    was recorded; this test failed. Also tried: `_halt_when_over_budget` counting only 'failed' rows:
    failed too."""
    make_customers(5)
    uid = deploy(failureThreshold={"count": 1})["upgradeId"]
    rows = _rows(sql, uid)
    runs = factory.runs()
    for log_id in rows[:2]:
        runs.claim_customer(log_id)
    runs.finish_customer(rows[0], "rolled_back", None, ROLLED_BACK, None)
    assert sql("SELECT halt_reason FROM system_upgrades")[0]["halt_reason"] is None  # 1 tolerated

    runs.finish_customer(rows[1], "rolled_back", None, ROLLED_BACK, None)

    reason = "wave 1 of 1: 2 of 5 customers failed (tolerated: 1)"
    assert sql("SELECT halt_reason FROM system_upgrades")[0]["halt_reason"] == reason
    assert sql("SELECT stop_reason FROM upgrade_runs")[0]["stop_reason"] == reason
    assert sql("SELECT failed_customers FROM system_upgrades")[0]["failed_customers"] == 2


def test_the_lease_recheck_counts_rolled_back_customers(make_customers, fake_workflow, sql):
    """A rolled-back row recorded without the halt (a worker that died between the two, say): the next
    customer's lease transaction still finds its wave over budget.

    Breakage tried: `wave_failed` in `leases._SESSION_READ` counting only 'failed': `budget_exceeded()`
    answered None; this test failed."""
    make_customers(3)
    uid = deploy()["upgradeId"]
    rows = _rows(sql, uid)
    for log_id in rows:
        factory.runs().claim_customer(log_id)
    sql("UPDATE customer_upgrade_logs SET status = 'rolled_back', error = %s WHERE id = %s", ROLLED_BACK, rows[0])

    with factory.leases().session(rows[1]) as lease:
        assert lease.stop_reason is None
        assert lease.budget_exceeded() == "wave 1 of 1: 1 of 3 customers failed (tolerated: 0)"
