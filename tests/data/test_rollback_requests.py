"""What a rollback request records, and what it refuses, word for word, against the real PostgreSQL: a
customer's rollback and its run, a whole upgrade's rollback (and an abort's), the targets a request is
checked against, and undoing a run whose execution could not start. Each test names the mutants of
`rollout/rollbacks.py` it kills (`make mutants MODULE=rollbacks`)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from upgrader import factory
from upgrader.infra.errors import CustomerNotInUpgrade, UpgradeNotFound, WrongState
from upgrader.rollout.rollbacks import RollbackTarget

from tests.api.helpers import deploy


def _changed(sql: Any, upgrade_id: int, customer_id: str, *, before: str = "v1.1.0", after: str = "v1.2.0") -> int:
    """The customer's upgrade row: helm changed its release from `before` to `after`."""
    rows = sql(
        """UPDATE customer_upgrade_logs SET status = 'completed', version_before = %s, version_after = %s,
                  revision_before = 1, revision_after = 2, job_name = 'helm-upgrade-' || id, completed_at = NOW()
            WHERE upgrade_id = %s AND customer_id = %s AND operation = 'upgrade' RETURNING id""",
        before, after, upgrade_id, customer_id,
    )  # fmt: skip
    return int(rows[0]["id"])


def _ended(sql: Any, upgrade_id: int, status: str = "completed") -> None:
    sql("UPDATE system_upgrades SET status = %s WHERE id = %s", status, upgrade_id)
    sql("UPDATE upgrade_runs SET status = 'ended' WHERE upgrade_id = %s", upgrade_id)


@pytest.fixture
def ended_upgrade(make_customers: Any, fake_workflow: Any, sql: Any) -> int:
    """cust_0001 and cust_0002 upgraded (api v1.1.0 → v1.2.0), cust_0003 skipped; the upgrade ended."""
    make_customers(3)
    uid = int(deploy()["upgradeId"])
    for customer in ("cust_0001", "cust_0002"):
        _changed(sql, uid, customer)
    sql("UPDATE customer_upgrade_logs SET status = 'skipped' WHERE upgrade_id = %s AND customer_id = 'cust_0003'", uid)
    _ended(sql, uid)
    return uid


def test_a_customer_rollback_gets_a_run_of_its_own_named_after_its_row(ended_upgrade: int, sql: Any) -> None:
    """Kills `rollout/rollbacks.py:120` (the run's name renamed) and the mutants of `insert_run`'s defaults
    (`attempt: int = 1` → `2`, `execution_name or run_name` → `and`)."""
    row = factory.rollbacks().create_rollback(ended_upgrade, "cust_0002", requested_by="ops@example.com")
    assert row.run_name == f"rollback-{ended_upgrade}-{row.id}"
    assert (row.status, row.operation, row.wave, row.from_version, row.to_version, row.attempt) == (
        "pending", "rollback", 0, "v1.2.0", "v1.1.0", 1)  # fmt: skip
    [run] = sql("SELECT * FROM upgrade_runs WHERE kind = 'rollback'")
    assert (run["run_name"], run["execution_name"], run["scope"], run["attempt"], run["requested_by"]) == (
        row.run_name, row.run_name, "customer", 1, "ops@example.com")  # fmt: skip


def test_a_customer_outside_the_upgrade_is_named_and_nothing_is_recorded(ended_upgrade: int, sql: Any) -> None:
    """Kills `rollout/rollbacks.py:112-113` (`is None` inverted, the message renamed)."""
    with pytest.raises(CustomerNotInUpgrade) as raised:
        factory.rollbacks().create_rollback(ended_upgrade, "cust_9999", requested_by=None)
    assert str(raised.value) == f"customer 'cust_9999' is not part of upgrade {ended_upgrade}"
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs WHERE operation = 'rollback'")[0]["n"] == 0


def test_a_rollback_recorded_meanwhile_by_another_request_is_a_conflict(ended_upgrade: int, sql: Any,
                                                                         database_url: str) -> None:  # fmt: skip
    """Two requests for the same customer at once (a whole-upgrade rollback's insert not committed yet when
    this one reads): the unique index refuses the second row, and the request is a WrongState naming it.

    Kills `rollout/rollbacks.py:128` (the message renamed)."""
    errors: list[BaseException] = []
    with psycopg.connect(database_url) as other:
        other.execute(
            "INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version, to_version, status,"
            " operation, wave) VALUES (%s, 'cust_0001', 'api', 'v1.2.0', 'v1.1.0', 'pending', 'rollback', 0)",
            (ended_upgrade,),
        )

        def request() -> None:
            try:
                factory.rollbacks().create_rollback(ended_upgrade, "cust_0001", requested_by=None)
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                errors.append(exc)

        worker = threading.Thread(target=request)
        worker.start()
        deadline = time.monotonic() + 20
        while not sql("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                      " AND query LIKE '%%INSERT INTO customer_upgrade_logs%%'"):  # fmt: skip
            assert time.monotonic() < deadline, "the request never waited for the other insert"
            time.sleep(0.01)
        other.commit()
        worker.join(30)
    assert len(errors) == 1 and isinstance(errors[0], WrongState)
    assert str(errors[0]) == "customer 'cust_0001' is already being rolled back"
    assert sql("SELECT count(*) AS n FROM upgrade_runs WHERE kind = 'rollback'")[0]["n"] == 0


def test_a_whole_upgrade_rollback_of_an_unknown_or_active_upgrade_is_refused(make_customers, fake_workflow, sql):
    """Kills `rollout/rollbacks.py:142-148` (`is None` inverted, `in` → `not in`, each message renamed)."""
    rollbacks = factory.rollbacks()
    with pytest.raises(UpgradeNotFound, match=r"^upgrade 987654 not found$"):
        rollbacks.create_upgrade_rollback(987654, requested_by=None, run_name="rollback-x")
    make_customers(1)
    uid = int(deploy()["upgradeId"])
    with pytest.raises(WrongState) as raised:
        rollbacks.create_upgrade_rollback(uid, requested_by=None, run_name="rollback-x")
    assert str(raised.value) == (
        f'upgrade {uid} is still pending; abort it with {{"rollback": true}} to stop it and roll back what it changed'
    )
    assert sql("SELECT count(*) AS n FROM upgrade_runs WHERE kind = 'rollback'")[0]["n"] == 0


def test_a_whole_upgrade_rollback_with_nothing_changed_records_no_run(make_customers, fake_workflow, sql):
    """Kills `rollout/rollbacks.py:166` (`if rows` inverted: a run with no row would be recorded) and the
    skipping of customers that changed nothing (`:157`)."""
    make_customers(2)
    uid = int(deploy()["upgradeId"])
    sql("UPDATE customer_upgrade_logs SET status = 'skipped' WHERE upgrade_id = %s", uid)
    _ended(sql, uid, "failed")
    assert factory.rollbacks().create_upgrade_rollback(uid, requested_by=None, run_name="rollback-none") == ([], [])
    assert sql("SELECT count(*) AS n FROM upgrade_runs WHERE run_name = 'rollback-none'")[0]["n"] == 0


def test_an_aborts_rollback_runs_in_the_upgrades_own_execution(ended_upgrade: int, sql: Any) -> None:
    """`scope="abort"`: the rollback run's execution is the upgrade's (its name without `-rollback`); any other
    rollback run is its own execution.

    Kills `rollout/rollbacks.py:167` (`"-rollback"` renamed, `scope == "abort"` → `!=`, `"abort"` renamed)."""
    [upgrade_run] = sql("SELECT run_name FROM upgrade_runs WHERE upgrade_id = %s", ended_upgrade)
    execution = upgrade_run["run_name"]
    rows = factory.runs().create_abort_rollback(ended_upgrade, requested_by="ops", run_name=f"{execution}-rollback")
    assert sorted(r.customer_id for r in rows) == ["cust_0001", "cust_0002"]
    run = sql("SELECT execution_name, scope FROM upgrade_runs WHERE run_name = %s", f"{execution}-rollback")
    assert run == [{"execution_name": execution, "scope": "abort"}]
    sql("UPDATE customer_upgrade_logs SET status = 'failed' WHERE operation = 'rollback'")
    factory.rollbacks().create_upgrade_rollback(ended_upgrade, requested_by=None, run_name="rollback-all-1-rollback")
    run = sql("SELECT execution_name, scope FROM upgrade_runs WHERE run_name = 'rollback-all-1-rollback'")
    assert run == [{"execution_name": "rollback-all-1-rollback", "scope": "upgrade"}]


def test_delete_run_undoes_only_the_pending_rows_of_that_rollback_run(ended_upgrade: int, sql: Any) -> None:
    """A rollback whose execution could not be started: its pending rows and its run are deleted, nothing else.

    Kills `rollout/rollbacks.py:190` and `:193` (each statement renamed, or its conditions)."""
    rollbacks = factory.rollbacks()
    mine = rollbacks.create_rollback(ended_upgrade, "cust_0001", requested_by=None)
    other = rollbacks.create_rollback(ended_upgrade, "cust_0002", requested_by=None)
    rollbacks.delete_run(mine.run_name)
    left = sql("SELECT id FROM customer_upgrade_logs WHERE operation = 'rollback'")
    assert left == [{"id": other.id}]
    assert [r["run_name"] for r in sql("SELECT run_name FROM upgrade_runs WHERE kind = 'rollback'")] == [other.run_name]
    # an upgrade run of that name is never deleted
    [upgrade_run] = sql("SELECT run_name FROM upgrade_runs WHERE kind = 'upgrade'")
    rollbacks.delete_run(upgrade_run["run_name"])
    assert sql("SELECT count(*) AS n FROM upgrade_runs WHERE kind = 'upgrade'")[0]["n"] == 1
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs WHERE operation = 'upgrade'")[0]["n"] == 3


def test_a_whole_upgrade_rollback_passes_over_the_unchanged_and_the_left_out_and_takes_the_rest(
    make_customers: Any, fake_workflow: Any, sql: Any
) -> None:
    """In the order the candidates are read (last wave first, then by row): cust_0001 was skipped after helm
    ran (a recovery Job: its release was touched, not upgraded), cust_0002 is being rolled back already (left
    out, with the reason), cust_0003 changed: only cust_0003 is rolled back.

    Kills `rollout/rollbacks.py:157` (`== "skipped"` renamed: the skipped customer would be rolled back),
    `:158` and `:162` (`continue` → `break`: every customer after the first passed over would be left), and
    `:183` (`!= "skipped"` renamed, `and why_not(c) is None` → `or`: the targets would name another customer)."""
    make_customers(3)
    uid = int(deploy()["upgradeId"])
    for customer in ("cust_0002", "cust_0003"):
        _changed(sql, uid, customer)
    sql("""UPDATE customer_upgrade_logs SET status = 'skipped', revision_before = 1, job_name = 'helm-recover-x',
                  error = 'release recovered; not upgraded' WHERE upgrade_id = %s AND customer_id = 'cust_0001'""",
        uid)  # fmt: skip
    _ended(sql, uid)
    rollbacks = factory.rollbacks()
    rollbacks.create_rollback(uid, "cust_0002", requested_by=None)

    # what a request is checked against (compatibility rules) is what it will restore
    assert rollbacks.rollback_targets(uid) == [RollbackTarget("cust_0003", {"api": "v1.1.0"})]
    rows, left_out = rollbacks.create_upgrade_rollback(uid, requested_by=None, run_name="rollback-rest")

    assert [r.customer_id for r in rows] == ["cust_0003"]
    assert [(c.customer_id, c.reason) for c in left_out] == [
        ("cust_0002", f"customer 'cust_0002' is being rolled back for upgrade {uid}")]  # fmt: skip


def test_what_a_rollback_restores_falls_back_to_what_was_planned_when_the_release_was_not_read(
    make_customers: Any, fake_workflow: Any, sql: Any
) -> None:
    """The target is the release's own version before helm; when that was never read, the version planned
    from the inventory; when neither is known, "previous" (helm's previous revision). What the rollback
    undoes is the version read after helm, else the one the upgrade asked for. `rollback_targets` (what
    compatibility rules check) offers only a target that is known.

    Kills `rollout/rollbacks.py:180` and `:183` (the fallback `c["from_version"]` renamed, the known-target
    condition inverted or dropped), `:228` (`upgraded["to_version"]` renamed) and `:229` (`from_version`
    renamed, `"previous"` renamed) and the same fallbacks of `_insert_rollback_rows` (`:273-274`)."""
    make_customers(2, versions={"dashboard": "v1.9.0"})  # no api version in the inventory: nothing planned from
    uid = int(deploy()["upgradeId"])
    # helm ran on both; neither release was read (rows recorded before releases were read)
    sql("UPDATE customer_upgrade_logs SET status = 'completed', job_name = 'helm-upgrade-' || id WHERE upgrade_id = %s",
        uid)  # fmt: skip
    sql("UPDATE customer_upgrade_logs SET from_version = 'v1.0.5' WHERE upgrade_id = %s AND customer_id = 'cust_0002'",
        uid)  # fmt: skip
    _ended(sql, uid)
    rollbacks = factory.rollbacks()

    assert rollbacks.rollback_targets(uid) == [RollbackTarget("cust_0002", {"api": "v1.0.5"})]

    first = rollbacks.create_rollback(uid, "cust_0001", requested_by=None)
    assert (first.from_version, first.to_version) == ("v1.2.0", "previous")
    sql("DELETE FROM customer_upgrade_logs WHERE operation = 'rollback'")
    rows, _ = rollbacks.create_upgrade_rollback(uid, requested_by=None, run_name="rollback-all-x")
    assert sorted((r.customer_id, r.from_version, r.to_version) for r in rows) == [
        ("cust_0001", "v1.2.0", "previous"), ("cust_0002", "v1.2.0", "v1.0.5")]  # fmt: skip
