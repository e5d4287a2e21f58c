"""Runs whose execution is gone, as the reconciler ends them, against the real PostgreSQL: a rollback run
(of one customer, of the whole upgrade), an execution Step Functions no longer knows, and the age below
which the sweep spares a run (its execution may still be starting). Each test names the mutants of
`rollout/reconciliation.py` it kills (`make mutants MODULE=reconciliation`)."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader import factory
from upgrader.infra.errors import NotFound
from upgrader.rollout import reconciliation

from tests.api.helpers import control, deploy, rollback


@pytest.fixture
def ended_upgrade(make_customers: Any, fake_workflow: Any, sql: Any) -> str:
    """cust_0001 and cust_0002 upgraded api v1.1.0 → v1.2.0; the upgrade completed."""
    make_customers(2)
    uid = deploy()["upgradeId"]
    sql("""UPDATE customer_upgrade_logs SET status = 'completed', version_before = 'v1.1.0', version_after = 'v1.2.0',
                  revision_before = 1, revision_after = 2, job_name = 'helm-upgrade-' || id WHERE upgrade_id = %s""",
        int(uid))  # fmt: skip
    sql("UPDATE system_upgrades SET status = 'completed', completed_customers = 2 WHERE id = %s", int(uid))
    sql("UPDATE upgrade_runs SET status = 'completed' WHERE upgrade_id = %s", int(uid))
    return uid


def _reconcile(name: str) -> list[str]:
    return reconciliation.reconcile_execution(name, "FAILED", "States.Runtime", None, recon=factory.reconcile(),
                                              runs=factory.runs(), cluster=None).reconciled  # fmt: skip


def test_a_dead_whole_upgrade_rollback_leaves_the_upgrade_rollback_incomplete(ended_upgrade: str, sql: Any) -> None:
    """Kills `rollout/reconciliation.py:219-222`: `run["kind"] == "upgrade"` inverted or renamed (a rollback
    run finalized as an upgrade), `"upgrade"` renamed in the scopes of a whole-upgrade rollback."""
    code, data = control("rollback", ended_upgrade)
    assert code == 202, data
    assert _reconcile(data["jobId"]) == [data["jobId"]]
    rows = sql("SELECT status, error FROM customer_upgrade_logs WHERE run_name = %s", data["jobId"])
    assert {(r["status"], r["error"]) for r in rows} == {
        ("skipped", f"not started: execution {data['jobId']} ended FAILED (States.Runtime)")}  # fmt: skip
    assert sql("SELECT status, halt_reason FROM system_upgrades WHERE id = %s", int(ended_upgrade)) == [
        {"status": "rollback_incomplete", "halt_reason": None}]  # fmt: skip
    assert sql("SELECT status FROM upgrade_runs WHERE run_name = %s", data["jobId"]) == [{"status": "reconciled"}]


def test_a_dead_customer_rollback_leaves_the_upgrades_status_alone(ended_upgrade: str, sql: Any) -> None:
    """Kills `rollout/reconciliation.py:222` (`"customer"` counted as a whole-upgrade scope: `in` → `not in`)."""
    code, data = rollback(ended_upgrade, "cust_0001")
    assert code == 202, data
    assert _reconcile(data["jobId"]) == [data["jobId"]]
    assert sql("SELECT status FROM customer_upgrade_logs WHERE id = %s", data["rollbackId"]) == [{"status": "skipped"}]
    assert sql("SELECT status FROM system_upgrades WHERE id = %s", int(ended_upgrade)) == [{"status": "completed"}]


class ForgetfulExecutions:
    """Step Functions no longer knows the execution (deleted, or another account's)."""

    def execution_status(self, name: str) -> dict[str, Any]:
        raise NotFound(f"execution {name} does not exist")


def test_a_run_whose_execution_does_not_exist_is_ended_as_missing(make_customers, fake_workflow, sql):
    """Kills `rollout/reconciliation.py:206` (the status, error and cause of a missing execution renamed) and
    `:207` (`"RUNNING"` renamed)."""
    make_customers(1)
    started = deploy()
    factory.runs().start_run(int(started["upgradeId"]), started["jobId"], "upgrade")
    swept = reconciliation.sweep(recon=factory.reconcile(), runs=factory.runs(), executions=ForgetfulExecutions(),
                                 cluster=None, min_age_seconds=0)  # fmt: skip
    assert swept.reconciled == [started["jobId"]]
    reason = f"execution {started['jobId']} ended MISSING (ExecutionDoesNotExist: no such execution)"
    assert sql("SELECT end_reason FROM upgrade_runs WHERE run_name = %s", started["jobId"]) == [{"end_reason": reason}]


def test_the_sweep_spares_a_run_younger_than_a_minute(make_customers, fake_workflow, sql):
    """The sweep's default `min_age_seconds` is 60: a run 55 s old is spared, one 60.2 s old is ended.

    Kills `rollout/reconciliation.py:181` (`min_age_seconds: int = 60` → `61`, while the sweep starts within
    0.8 s of the age being set; a slower machine only lets that mutant pass, never fails this test)."""
    make_customers(1)
    started = deploy()
    name = started["jobId"]
    factory.runs().start_run(int(started["upgradeId"]), name, "upgrade")
    fake_workflow.statuses[name] = "FAILED"

    def sweep() -> list[str]:
        return reconciliation.sweep(recon=factory.reconcile(), runs=factory.runs(), executions=fake_workflow,
                                    cluster=None).reconciled  # fmt: skip

    sql("UPDATE upgrade_runs SET created_at = NOW() - interval '55 seconds' WHERE run_name = %s", name)
    assert sweep() == []
    sql("UPDATE upgrade_runs SET created_at = NOW() - interval '60.2 seconds' WHERE run_name = %s", name)
    assert sweep() == [name]


@pytest.mark.parametrize(("status", "ended"), [("FAILED", True), ("TIMED_OUT", True), ("ABORTED", True),
                                               ("SUCCEEDED", False)])  # fmt: skip
def test_an_execution_event_ends_its_runs_only_for_a_status_that_ends_badly(make_customers, fake_workflow, sql,
                                                                             status, ended):  # fmt: skip
    """Kills `rollout/reconciliation.py:35` (each of `"FAILED"`, `"TIMED_OUT"`, `"ABORTED"` renamed)."""
    make_customers(1)
    started = deploy()
    factory.runs().start_run(int(started["upgradeId"]), started["jobId"], "upgrade")
    result = reconciliation.reconcile_execution(started["jobId"], status, None, None, recon=factory.reconcile(),
                                                runs=factory.runs(), cluster=None)  # fmt: skip
    assert result.reconciled == ([started["jobId"]] if ended else [])
    expected = "reconciled" if ended else "running"
    assert sql("SELECT status FROM upgrade_runs WHERE run_name = %s", started["jobId"]) == [{"status": expected}]


def test_closing_a_run_that_is_not_running_changes_nothing(make_customers, fake_workflow, sql):
    """A run that ended meanwhile (or never existed) is not closed again: nothing is skipped or recorded.

    Kills `rollout/reconciliation.py:85` (`or` → `and`, `!= "running"` → `==` or renamed)."""
    make_customers(1)
    started = deploy()
    sql("UPDATE upgrade_runs SET status = 'completed' WHERE run_name = %s", started["jobId"])
    before = sql("SELECT * FROM customer_upgrade_logs"), sql("SELECT * FROM upgrade_runs")
    recon = factory.reconcile()
    assert recon.close_dead_run(started["jobId"], "gone") is None
    assert recon.close_dead_run("upgrade-0-none", "gone") is None
    assert (sql("SELECT * FROM customer_upgrade_logs"), sql("SELECT * FROM upgrade_runs")) == before
    assert sql("SELECT count(*) AS n FROM event_outbox WHERE detail_type = 'Upgrade Run Reconciled'")[0]["n"] == 0


def test_a_sweep_without_an_output_store_expires_nothing(make_customers, fake_workflow, sql):
    """Kills `rollout/reconciliation.py:194` (`outputs is not None and ...` → `or`: the sweep would fail)."""
    swept = reconciliation.sweep(recon=factory.reconcile(), runs=factory.runs(), executions=fake_workflow,
                                 cluster=None, outputs=None, output_retention_days=30)  # fmt: skip
    assert swept.as_dict() == {"reconciled": [], "settled": [], "stillRunning": []}


def test_a_dead_aborts_rollback_leaves_the_upgrade_rollback_incomplete(ended_upgrade: str, sql: Any) -> None:
    """An abort's rollback runs in the upgrade's own execution (scope `abort`): when that execution dies, the
    rollback run is ended as a whole-upgrade one.

    Kills `rollout/reconciliation.py:222` (`"abort"` renamed)."""
    uid = int(ended_upgrade)
    sql("UPDATE system_upgrades SET status = 'aborted' WHERE id = %s", uid)
    [run] = sql("SELECT run_name FROM upgrade_runs WHERE upgrade_id = %s", uid)
    execution = run["run_name"]
    rows = factory.runs().create_abort_rollback(uid, requested_by="ops", run_name=f"{execution}-rollback")
    assert len(rows) == 2
    assert _reconcile(execution) == [f"{execution}-rollback"]
    assert sql("SELECT status FROM system_upgrades WHERE id = %s", uid) == [{"status": "rollback_incomplete"}]


def test_a_run_ended_meanwhile_is_not_reported_as_ended_by_the_sweep(make_customers, fake_workflow, sql):
    """The sweep read the run as running; by the time it closes it, the run has ended by itself: not counted.

    Kills `rollout/reconciliation.py:217` (`return False` → `return True`)."""
    make_customers(1)
    started = deploy()
    factory.runs().start_run(int(started["upgradeId"]), started["jobId"], "upgrade")
    [stale] = factory.reconcile().running_runs(execution_name=started["jobId"])  # as the sweep read it
    sql("UPDATE upgrade_runs SET status = 'completed' WHERE run_name = %s", started["jobId"])
    fake_workflow.statuses[started["jobId"]] = "SUCCEEDED"
    ended = reconciliation.end_if_dead(stale, executions=fake_workflow, recon=factory.reconcile(), runs=factory.runs())
    assert ended is False
    assert sql("SELECT status FROM upgrade_runs WHERE run_name = %s", started["jobId"]) == [{"status": "completed"}]
