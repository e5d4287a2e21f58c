"""What a stop records (`upgrader.rollout.halts`): a halt's and an abort's event carry the stop whole, the
first halt wins and is told once, and the late outcome of a run that has ended never halts the upgrade.
Real PostgreSQL, the real handlers; Step Functions is the recording fake."""

from __future__ import annotations

from typing import Any

from upgrader import factory
from upgrader.infra.db import columns, select_returned
from upgrader.rollout import halts
from upgrader.rollout.run_records import LogRecord

from tests.api.helpers import control, deploy
from tests.support.functions import invoke


def _events(sql: Any, detail_type: str) -> list[dict[str, Any]]:
    return sql("SELECT event_key, detail FROM event_outbox WHERE detail_type = %s ORDER BY id", detail_type)


def _started(make_customers: Any, sql: Any, n: int) -> tuple[str, str, dict[str, dict[str, Any]]]:
    make_customers(n)
    started = deploy()
    uid, name = started["upgradeId"], started["jobId"]
    factory.runs().start_run(int(uid), name, "upgrade")
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs WHERE upgrade_id = %s", int(uid))}
    return uid, name, rows


def _fail(upgrade_id: str, row: dict[str, Any]) -> None:
    """RecordResult for a customer whose helm Job failed (the run is waiting for nobody's window)."""
    event = {"upgradeId": int(upgrade_id), "logId": row["id"], "customer": {"autoRollback": False},
             "job": {"phase": "failed", "stage": "upgrade", "error": "helm: manifest rejected"}}  # fmt: skip
    assert invoke("finish_customer", event)["recorded"] is True


def test_a_halt_is_told_once_with_its_reason_and_budget_and_a_later_halt_changes_nothing(
    make_customers, fake_workflow, sql
):
    """Kills the mutants of `rollout/halts.py`: `if halted is not None:` → `if halted is None:` (line 69: the
    first halt told nothing, a second one failed on `None["execution_name"]`), the event key
    `f"halted:..."` → `f"XXhalted:...XX"` (line 70), and the keys `"halt"`, `"reason"`, `"budget"` of the
    event's detail renamed (line 71)."""
    uid, name, rows = _started(make_customers, sql, 3)
    _fail(uid, rows["cust_0001"])  # "all" tolerates no failure: the upgrade halts

    reason = "wave 1 of 1: 1 of 3 customers failed (tolerated: 0)"
    execution = sql("SELECT execution_name FROM system_upgrades WHERE id = %s", int(uid))[0]["execution_name"]
    told = _events(sql, "Upgrade Halted")
    assert [e["event_key"] for e in told] == [f"halted:{execution}"]
    assert told[0]["detail"]["halt"] == {
        "reason": reason,
        "budget": {"wave": 0, "failed": 1, "size": 3, "tolerated": 0, "consumed": 1.0},
    }

    # a second halt (an operator's, a retry's) finds the first: it returns False and tells nobody again
    with factory.database().transaction() as cur:
        assert halts.halt(cur, int(uid), "operator: stop") is False
    assert sql("SELECT halt_reason FROM system_upgrades WHERE id = %s", int(uid))[0]["halt_reason"] == reason
    assert len(_events(sql, "Upgrade Halted")) == 1
    assert sql("SELECT stop_reason FROM upgrade_runs WHERE run_name = %s", name)[0]["stop_reason"] == reason


def test_a_failure_recorded_after_its_run_ended_never_halts_the_upgrade(make_customers, fake_workflow, sql):
    """Kills the mutant of `rollout/halts.py:113`: `if wave is None or wave["run_status"] != "running":` →
    `... and ...` (the failure of a run that has ended, over its wave's budget, halted the upgrade)."""
    uid, name, rows = _started(make_customers, sql, 2)
    sql(
        "UPDATE customer_upgrade_logs SET status = 'failed', run_name = %s WHERE id = %s", name, rows["cust_0001"]["id"]
    )
    with factory.database().transaction() as cur:  # the row as FinishCustomer recorded it
        row = select_returned(cur, LogRecord, f"SELECT {columns(LogRecord)} FROM customer_upgrade_logs WHERE id = %s",
                              (rows["cust_0001"]["id"],))  # fmt: skip
    sql("UPDATE upgrade_runs SET status = 'failed' WHERE run_name = %s", name)  # the run has ended meanwhile

    with factory.database().transaction() as cur:
        assert halts.halt_when_over_budget(cur, row) is None
    assert sql("SELECT halt_reason FROM system_upgrades WHERE id = %s", int(uid))[0]["halt_reason"] is None
    assert _events(sql, "Upgrade Halted") == []

    # the same failure while its run runs is over the wave's budget: the upgrade halts
    sql("UPDATE upgrade_runs SET status = 'running' WHERE run_name = %s", name)
    with factory.database().transaction() as cur:
        assert halts.halt_when_over_budget(cur, row) == "wave 1 of 1: 1 of 2 customers failed (tolerated: 0)"


def test_an_abort_is_told_with_its_reason_who_rollback_and_the_runs_it_stopped(make_customers, fake_workflow, sql):
    """Kills the mutants of `rollout/halts.py:138-139`: the keys `"abort"`, `"reason"`, `"abortedBy"`,
    `"rollback"` and `"stoppedRuns"` of the Upgrade Aborted event's detail renamed."""
    uid, name, _ = _started(make_customers, sql, 2)
    code, data = control("abort", uid, {"reason": "pager went off", "rollback": True})
    assert code == 202, data

    told = _events(sql, "Upgrade Aborted")
    assert len(told) == 1
    assert told[0]["detail"]["abort"] == {
        "reason": data["haltReason"],
        "abortedBy": "arn:aws:sts::123456789012:assumed-role/PlatformOperator/jane",
        "rollback": True,
        "stoppedRuns": [name],
    }
