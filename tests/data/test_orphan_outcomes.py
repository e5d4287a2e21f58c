"""What the reconciler records for a customer whose run ended while it held its release's lease, for each
state its helm Job can be found in, word for word, against the real PostgreSQL (the cluster is the
in-memory fake of tests/data/test_reconciliation.py). Each test names the mutants of
`rollout/reconciliation.py` it kills (`make mutants MODULE=reconciliation`)."""

from __future__ import annotations

from typing import Any

from upgrader import factory
from upgrader.cluster.types import JobState, ReleaseInfo
from upgrader.rollout import reconciliation
from upgrader.rollout.run_repository import ORPHANED

from tests.api.helpers import deploy
from tests.data.test_reconciliation import FakeCluster, job_running

SECRET = "pg-Pa55-w0rd-7781"  # noqa: S105 - a test's fake credential
NOTE = "--- recorded by the reconciler: its worker or execution ended before the Job did"


def _orphan(make_customers: Any, sql: Any, *, job: bool = True) -> tuple[int, str, dict[str, Any], str]:
    """cust_0001 holds its release's lease (with its helm Job created when `job`), and its run's execution
    ends: (upgrade id, run name, the row, the Job's name)."""
    make_customers(1)
    started = deploy()
    uid, name = int(started["upgradeId"]), started["jobId"]
    factory.runs().start_run(uid, name, "upgrade")
    [row] = sql("SELECT * FROM customer_upgrade_logs WHERE upgrade_id = %s", uid)
    if job:
        job_name = job_running(sql, str(uid), "cust_0001")
    else:
        factory.runs().claim_customer(row["id"])
        with factory.leases().session(row["id"]) as lease:
            assert lease.state == "acquired"
        job_name = ""
    reconciliation.reconcile_execution(name, "ABORTED", None, None, recon=factory.reconcile(), runs=factory.runs(),
                                       cluster=None)  # fmt: skip
    return uid, name, row, job_name


def _settle(cluster: Any, outputs: Any = None) -> dict[str, Any]:
    result = reconciliation.ReconcileResult()
    reconciliation.settle_orphans(recon=factory.reconcile(), runs=factory.runs(), cluster=cluster, result=result,
                                  outputs=outputs)  # fmt: skip
    return result.as_dict()


def _log(sql: Any, log_id: int) -> dict[str, Any]:
    return sql("SELECT * FROM customer_upgrade_logs WHERE id = %s", log_id)[0]


def test_a_dead_run_keeps_the_leased_row_for_its_job_and_says_so(make_customers, fake_workflow, sql):
    """Closing a dead run: the row holding the lease stays in progress, marked as the reconciler's to record;
    the run is reconciled with the reason, and one Upgrade Run Reconciled event names it.

    Kills `rollout/reconciliation.py:99-117`: the ORPHANED marking's statement renamed or its `in_progress`
    renamed, `stop_reason = COALESCE(stop_reason, %s)` dropped, and the event's key and detail renamed."""
    uid, name, row, _ = _orphan(make_customers, sql)
    log = _log(sql, row["id"])
    assert (log["status"], log["waiting_for"]) == ("in_progress", ORPHANED)
    reason = f"execution {name} ended ABORTED"
    run = sql("SELECT status, end_reason, stop_reason FROM upgrade_runs WHERE run_name = %s", name)[0]
    assert run == {"status": "reconciled", "end_reason": reason, "stop_reason": reason}
    [event] = sql("SELECT event_key, detail FROM event_outbox WHERE detail_type = 'Upgrade Run Reconciled'")
    assert event["event_key"].endswith(f"reconciled:{name}")
    assert event["detail"]["run"] == {"runName": name, "kind": "upgrade", "reason": reason}


def test_a_job_gone_before_its_outcome_was_read_fails_the_customer_naming_the_release(make_customers, fake_workflow,
                                                                                      sql):  # fmt: skip
    """Kills `rollout/reconciliation.py:261-263` (`"missing"` renamed, the message renamed, `"failed"` renamed)
    and `:265` (`state.output and outputs is not None` → `or`: an empty output would be stored)."""
    uid, _, row, job = _orphan(make_customers, sql)
    outputs = factory.helm_outputs()
    swept = _settle(FakeCluster(), outputs)  # knows no Job: missing (no output); the release holds revision 2
    log = _log(sql, row["id"])
    assert swept == {"reconciled": [], "settled": [row["id"]], "stillRunning": []}
    assert (log["status"], log["error"]) == (
        "failed", f"Job {job} is gone before its outcome was read; the release holds revision 2")  # fmt: skip
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    assert sql("SELECT count(*) AS n FROM helm_outputs")[0]["n"] == 0  # no output: nothing stored


def test_a_failed_job_that_left_its_release_stuck_says_the_next_operation_recovers_it(make_customers, fake_workflow,
                                                                                      sql):  # fmt: skip
    """Kills `rollout/reconciliation.py:258-260` (`status == "failed"` inverted or renamed, `and` → `or`, the
    message renamed), `:265` (`state.output and outputs is not None` → `or`: no store to write to) and `:268`
    (the note's `f"--- {note} ---"` renamed)."""
    uid, _, row, job = _orphan(make_customers, sql)
    cluster = FakeCluster()
    cluster.jobs[job] = JobState(job, "failed", "Error: UPGRADE FAILED: killed", "helm killed")
    cluster.releases["customer-0001"] = ReleaseInfo("customer-0001", "customer-0001", "pending-upgrade", 3, 2)
    _settle(cluster)  # no output store: the Job's output is not kept (and nothing fails for it)
    log = _log(sql, row["id"])
    assert (log["status"], log["error"]) == (
        "failed", "helm killed; the release is pending-upgrade (revision 3): the next operation's pre-check "
        "recovers it")  # fmt: skip
    assert log["output"] == f"{NOTE} ---"


def test_a_succeeded_upgrade_is_completed_its_output_stored_redacted_and_the_unrun_check_named(
    make_customers, fake_workflow, sql
):  # fmt: skip
    """Kills `rollout/reconciliation.py:252-256` and `:264-270`: the operation read from the Job's name
    (`match.group(1)`, the fallback `"upgrade"`), the note and `"; the health check did not run"` renamed,
    `status == "completed"` inverted, `state.output and outputs is not None` → `or`, the output recorded
    unredacted or under another stage or phase, and the release's snapshot not recorded."""
    uid, _, row, job = _orphan(make_customers, sql)
    cluster = FakeCluster()
    cluster.jobs[job] = JobState(job, "succeeded", f"upgraded; password {SECRET}\n")
    cluster.releases["customer-0001"] = ReleaseInfo(
        "customer-0001",
        "customer-0001",
        "deployed",
        5,
        5,
        None,
        "1.4.0",
        {"api": "v1.2.0"},
        secrets=frozenset({SECRET}),
    )
    swept = _settle(cluster, outputs=factory.helm_outputs())
    log = _log(sql, row["id"])
    assert swept["settled"] == [row["id"]]
    assert (log["status"], log["error"], log["revision_after"], log["version_after"]) == (
        "completed",
        None,
        5,
        "v1.2.0",
    )
    assert f"{NOTE}; the health check did not run ---" in log["output"]
    [stored] = sql("SELECT job_name, stage, phase, output FROM helm_outputs WHERE log_id = %s", row["id"])
    assert (stored["job_name"], stored["stage"], stored["phase"]) == (job, "upgrade", "succeeded")
    assert SECRET not in stored["output"] and stored["output"].startswith("upgraded; password ")
    counters = sql("SELECT completed_customers, failed_customers FROM system_upgrades WHERE id = %s", uid)[0]
    assert counters == {"completed_customers": 1, "failed_customers": 0}


def test_an_automatic_rollback_job_means_the_upgrade_did_not_stick(make_customers, fake_workflow, sql):
    """The row's last Job was its automatic rollback (`helm-rollback-...`): the upgrade failed, and the error
    says to which revision it was rolled back; no health-check note (not completed).

    Kills `rollout/reconciliation.py:36` (the Job name pattern renamed) and `:252-256` (the operation from the
    name, its fallback, `release.revision` passed)."""
    uid, _, row, _ = _orphan(make_customers, sql)
    job = f"helm-rollback-{row['id']}-cust-0001-a1"
    sql("UPDATE customer_upgrade_logs SET job_name = %s WHERE id = %s", job, row["id"])
    cluster = FakeCluster()
    cluster.jobs[job] = JobState(job, "succeeded")
    cluster.releases["customer-0001"] = ReleaseInfo("customer-0001", "customer-0001", "deployed", 6, 6)
    _settle(cluster)
    log = _log(sql, row["id"])
    assert (log["status"], log["error"]) == ("failed", "the upgrade did not complete; rolled back to revision 6")
    assert "the health check did not run" not in log["output"]


def test_a_job_not_yet_ended_keeps_its_lease(make_customers, fake_workflow, sql):
    """A Job still pending (created, not started) or running is looked at again by the next sweep.

    Kills `rollout/reconciliation.py:248` (`"pending"` or `"running"` renamed, `in` → `not in`)."""
    uid, _, row, job = _orphan(make_customers, sql)
    cluster = FakeCluster()
    for phase in ("pending", "running"):
        cluster.jobs[job] = JobState(job, phase)  # type: ignore[arg-type]
        assert _settle(cluster) == {"reconciled": [], "settled": [], "stillRunning": [row["id"]]}
        assert _log(sql, row["id"])["status"] == "in_progress"
        assert sql("SELECT log_id FROM customer_leases") == [{"log_id": row["id"]}]


def test_a_lease_taken_without_a_job_is_skipped_and_a_lease_left_on_a_final_row_is_given_back(
    make_customers, fake_workflow, sql
):  # fmt: skip
    """Kills `rollout/reconciliation.py:239-245`: the final row's lease not given back (`not in` → `in`, the
    statuses renamed, `continue` → `break`), `if not name` inverted, the skip's reason renamed, and the
    settled row not listed; `:138` (`give_back_lease`'s statement renamed)."""
    uid, _, row, _ = _orphan(make_customers, sql, job=False)
    assert _settle(FakeCluster()) == {"reconciled": [], "settled": [row["id"]], "stillRunning": []}
    log = _log(sql, row["id"])
    assert (log["status"], log["error"]) == ("skipped", "not started: its run ended before helm")
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    # a lease left behind on a row already final is only given back
    sql("INSERT INTO customer_leases (customer_id, log_id, upgrade_id, run_name, operation, component)"
        " SELECT customer_id, id, upgrade_id, run_name, operation, component FROM customer_upgrade_logs WHERE id = %s",
        row["id"])  # fmt: skip
    assert _settle(FakeCluster()) == {"reconciled": [], "settled": [], "stillRunning": []}
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    assert _log(sql, row["id"])["error"] == "not started: its run ended before helm"


def test_a_late_outcome_moves_an_ended_upgrades_final_status_with_its_counts(make_customers, fake_workflow, sql):
    """An upgrade that ended without a halt (its run finished, one customer's worker died with the Job
    running): the late failure makes it `failed` when nothing completed, `completed_with_failures` otherwise.

    Kills `rollout/reconciliation.py:146-152` (each status renamed, `= 0` → `<> 0` in both branches, the
    statuses it may change renamed, `halt_reason IS NULL` → `IS NOT NULL`) and `:271-273`."""
    for completed, expected in ((0, "failed"), (1, "completed_with_failures")):
        sql("TRUNCATE customers, system_upgrades CASCADE")
        uid, _, row, job = _orphan(make_customers, sql)
        sql("UPDATE system_upgrades SET status = 'completed', halt_reason = NULL, completed_customers = %s,"
            " failed_customers = 0 WHERE id = %s", completed, uid)  # fmt: skip
        cluster = FakeCluster()
        cluster.jobs[job] = JobState(job, "failed", "", "BackoffLimitExceeded")
        assert _settle(cluster)["settled"] == [row["id"]]
        assert sql("SELECT status FROM system_upgrades WHERE id = %s", uid) == [{"status": expected}]


def test_every_orphan_of_a_sweep_is_looked_at_whatever_came_before_it(make_customers, fake_workflow, sql):
    """One sweep, four leased rows of a dead run, in the order it reads them: a row already final (only its
    lease was left), a row with no Job, a Job still running, and a finished Job whose name is none the product
    builds today (taken as an upgrade Job): each gets its own outcome.

    Kills `rollout/reconciliation.py:241`, `:246` and `:250` (each `continue` → `break`: the rows after it
    would wait for another sweep) and `:253` (the fallback operation `"upgrade"` renamed)."""
    make_customers(4)
    started = deploy()
    uid, name = int(started["upgradeId"]), started["jobId"]
    factory.runs().start_run(uid, name, "upgrade")
    rows = {r["customer_id"]: r["id"] for r in sql("SELECT id, customer_id FROM customer_upgrade_logs")}
    jobs = {"cust_0003": "helm-upgrade-3-cust-0003-a1", "cust_0004": "upgrade-cust-0004-from-an-older-version"}
    for customer, log_id in sorted(rows.items()):
        factory.runs().claim_customer(log_id)
        with factory.leases().session(log_id) as lease:
            assert lease.state == "acquired"
            if customer in jobs:
                lease.record_job(jobs[customer])
    sql("UPDATE customer_upgrade_logs SET status = 'completed' WHERE id = %s", rows["cust_0001"])
    reconciliation.reconcile_execution(name, "FAILED", None, None, recon=factory.reconcile(), runs=factory.runs(),
                                       cluster=None)  # fmt: skip
    cluster = FakeCluster()
    cluster.jobs[jobs["cust_0003"]] = JobState(jobs["cust_0003"], "running")
    cluster.jobs[jobs["cust_0004"]] = JobState(jobs["cust_0004"], "succeeded")

    swept = _settle(cluster)

    assert swept == {"reconciled": [], "settled": [rows["cust_0002"], rows["cust_0004"]],
                     "stillRunning": [rows["cust_0003"]]}  # fmt: skip
    statuses = {c: _log(sql, i)["status"] for c, i in rows.items()}
    assert statuses == {"cust_0001": "completed", "cust_0002": "skipped", "cust_0003": "in_progress",
                        "cust_0004": "completed"}  # fmt: skip
    assert sql("SELECT log_id FROM customer_leases") == [{"log_id": rows["cust_0003"]}]


def test_a_leased_row_never_claimed_is_skipped_not_left_pending(make_customers, fake_workflow, sql):
    """A row that took its lease while still pending (the lease session takes it for any row not final), of an
    upgrade already aborted, whose run then died before helm: closing the run keeps it (it holds a lease) and
    the upgrade's final status is set already, so the reconciler skips it, with the reason, and gives its lease
    back; it is never left pending in an ended run.

    Kills `rollout/reconciliation.py:239` (`"pending"` renamed: the row would be taken for a final one)."""
    make_customers(1)
    started = deploy()
    uid, name = int(started["upgradeId"]), started["jobId"]
    factory.runs().start_run(uid, name, "upgrade")
    [row] = sql("SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s", uid)
    with factory.leases().session(row["id"]) as lease:
        assert lease.state == "acquired"
    sql("UPDATE system_upgrades SET status = 'aborted' WHERE id = %s", uid)
    reconciliation.reconcile_execution(name, "FAILED", None, None, recon=factory.reconcile(), runs=factory.runs(),
                                       cluster=None)  # fmt: skip
    assert _log(sql, row["id"])["status"] == "pending"  # kept for the reconciler: it holds the lease
    assert _settle(FakeCluster()) == {"reconciled": [], "settled": [row["id"]], "stillRunning": []}
    log = _log(sql, row["id"])
    assert (log["status"], log["error"]) == ("skipped", "not started: its run ended before helm")
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
