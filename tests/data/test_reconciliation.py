"""The reconciler and resume against the real PostgreSQL (the cluster is an in-memory fake here; the
end-to-end tests run them against the simulated cluster and the real state machine)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from upgrader import factory
from upgrader.cluster.types import JobState, ReleaseInfo
from upgrader.infra.errors import UpgradeNotFound
from upgrader.notifications import events
from upgrader.rollout import reconciliation

from tests.api.helpers import control, deploy, status
from tests.conftest import body
from tests.support.events import api_event
from tests.support.functions import invoke


class FakeCluster:
    def __init__(self) -> None:
        self.jobs: dict[str, JobState] = {}
        self.releases: dict[str, ReleaseInfo] = {}

    def get_helm_job_named(self, name: str) -> JobState:
        return self.jobs.get(name, JobState(name, "missing"))

    def release_status(self, namespace: str, release: str) -> ReleaseInfo:
        return self.releases.get(namespace, ReleaseInfo(release, namespace, "deployed", 2, 2, None, "1.4.0", {}))


def _rows(sql: Any, upgrade_id: str) -> dict[str, dict[str, Any]]:
    rows = sql("SELECT * FROM customer_upgrade_logs WHERE upgrade_id = %s AND operation = 'upgrade'", int(upgrade_id))
    return {r["customer_id"]: r for r in rows}


def _reconcile(name: str, status: str = "ABORTED", cluster: Any = None) -> dict[str, Any]:
    return reconciliation.reconcile_execution(
        name, status, "States.Runtime", "stopped in the console",
        recon=factory.reconcile(), runs=factory.runs(), cluster=cluster,
    ).as_dict()  # fmt: skip


def job_running(sql: Any, upgrade_id: str, customer_id: str) -> str:
    """The customer is claimed, takes its release's lease and its helm Job is created: the Job's name."""
    row = _rows(sql, upgrade_id)[customer_id]
    job = f"helm-upgrade-{row['id']}-{customer_id}"
    factory.runs().claim_customer(row["id"])
    with factory.leases().session(row["id"]) as lease:
        lease.record_plan(revision_before=1, version_before="v1.1.0", chart_version="1.4.0")
        lease.record_job(job)
    return job


def _started(make_customers: Any, sql: Any, n: int) -> tuple[str, str, Any, dict[str, dict[str, Any]]]:
    """An upgrade of n customers (all at once) whose run has started: (id, run name, RunRepository, rows)."""
    make_customers(n)
    started = deploy()
    uid, name = started["upgradeId"], started["jobId"]
    runs = factory.runs()
    runs.start_run(int(uid), name, "upgrade")
    return uid, name, runs, _rows(sql, uid)


def _mid_wave(make_customers: Any, sql: Any) -> tuple[str, str, FakeCluster]:
    """An upgrade of 4 customers stopped mid-wave: 1 completed, 1 with its Job running (lease held),
    1 claimed but not yet started (no lease), 1 pending."""
    uid, name, runs, rows = _started(make_customers, sql, 4)
    for customer in ("cust_0001", "cust_0002"):
        job_running(sql, uid, customer)
    runs.claim_customer(rows["cust_0003"]["id"])
    runs.finish_customer(rows["cust_0001"]["id"], "completed", "ok", None,
                         {"revision": 2, "versions": {"api": "v1.2.0"}, "chartVersion": "1.4.0"})  # fmt: skip
    cluster = FakeCluster()
    cluster.jobs[f"helm-upgrade-{rows['cust_0002']['id']}-cust_0002"] = JobState("x", "running")
    return uid, name, cluster


def test_a_stopped_execution_is_finished_in_the_database(make_customers, fake_workflow, sql):
    uid, name, cluster = _mid_wave(make_customers, sql)
    result = _reconcile(name, cluster=cluster)
    rows = _rows(sql, uid)
    assert result["reconciled"] == [name]
    assert {c: r["status"] for c, r in rows.items()} == {
        "cust_0001": "completed", "cust_0002": "in_progress", "cust_0003": "skipped", "cust_0004": "skipped",
    }  # fmt: skip
    assert rows["cust_0004"]["error"].startswith(f"not started: execution {name} ended ABORTED (States.Runtime")
    # the upgrade is final, so a new deploy of the component is accepted
    upgrade = status(uid)[1]
    assert upgrade["status"] == "halted" and "ended ABORTED" in upgrade["haltReason"]
    assert upgrade["attempts"][0]["status"] == "reconciled"
    assert deploy(version="v1.3.0", customerIds=["cust_0004"])["status"] == "pending"
    # the customer whose Job still runs keeps its lease until the Job ends
    assert [r["customer_id"] for r in sql("SELECT customer_id FROM customer_leases")] == ["cust_0002"]
    assert result["stillRunning"] == [rows["cust_0002"]["id"]]
    # when it ends, the next sweep records its real outcome and frees the lease
    job = f"helm-upgrade-{rows['cust_0002']['id']}-cust_0002"
    cluster.jobs[job] = JobState(job, "failed", "Error: UPGRADE FAILED: boom", "BackoffLimitExceeded")
    cluster.releases["customer-0002"] = ReleaseInfo("customer-0002", "customer-0002", "deployed", 4, 4, None,
                                                    "1.4.0", {"api": "v1.1.0"})  # fmt: skip
    fake_workflow.statuses[name] = "ABORTED"
    swept = reconciliation.sweep(recon=factory.reconcile(), runs=factory.runs(), executions=fake_workflow,
                                 cluster=cluster, min_age_seconds=0).as_dict()  # fmt: skip
    row = _rows(sql, uid)["cust_0002"]
    assert swept["settled"] == [row["id"]]
    assert (row["status"], row["error"], row["revision_after"], row["version_after"]) == (
        "failed", "BackoffLimitExceeded", 4, "v1.1.0")  # fmt: skip
    assert "recorded by the reconciler" in row["output"]
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    counters = sql("SELECT completed_customers, failed_customers FROM system_upgrades WHERE id = %s", int(uid))[0]
    assert counters == {"completed_customers": 1, "failed_customers": 1}


def test_reconciling_twice_changes_nothing(make_customers, fake_workflow, sql):
    uid, name, cluster = _mid_wave(make_customers, sql)
    _reconcile(name, cluster=cluster)
    before = sql("SELECT * FROM customer_upgrade_logs ORDER BY id"), sql("SELECT * FROM system_upgrades")
    assert _reconcile(name, cluster=cluster)["reconciled"] == []
    assert (sql("SELECT * FROM customer_upgrade_logs ORDER BY id"), sql("SELECT * FROM system_upgrades")) == before


def test_a_succeeded_or_running_execution_is_left_alone(make_customers, fake_workflow, sql):
    uid, name, _ = _mid_wave(make_customers, sql)
    assert _reconcile(name, status="SUCCEEDED")["reconciled"] == []
    swept = reconciliation.sweep(recon=factory.reconcile(), runs=factory.runs(), executions=fake_workflow,
                                 cluster=None, min_age_seconds=0)  # fmt: skip
    assert swept.reconciled == []  # the fake says RUNNING
    assert status(uid)[1]["status"] == "in_progress"


def test_the_sweep_finds_a_run_whose_event_was_lost(make_customers, fake_workflow, sql):
    uid, name, _ = _mid_wave(make_customers, sql)
    fake_workflow.statuses[name] = "FAILED"
    swept = reconciliation.sweep(recon=factory.reconcile(), runs=factory.runs(), executions=fake_workflow,
                                 cluster=None, min_age_seconds=0)  # fmt: skip
    assert swept.reconciled == [name]
    assert status(uid)[1]["status"] == "halted"


def test_abort_of_an_upgrade_whose_execution_is_gone_ends_it_at_once(make_customers, fake_workflow, sql):
    uid, name, _ = _mid_wave(make_customers, sql)
    fake_workflow.statuses[name] = "ABORTED"
    code, data = control("abort", uid, {"reason": "stuck"})
    assert code == 202, data
    assert data["stoppedRuns"] == [name]
    assert status(uid)[1]["status"] == "aborted"


def resume(upgrade_id: str, payload: Any = None):
    event = api_event("api_control_abort", path=f"/api/upgrades/{upgrade_id}/resume",
                      path_params={"upgradeId": upgrade_id})  # fmt: skip
    event["resource"] = "/api/upgrades/{upgradeId}/resume"
    event["body"] = json.dumps(payload) if payload is not None else None
    response = invoke("api_control", event)
    return response["statusCode"], body(response)


def test_resume_after_a_halt_takes_only_the_customers_not_yet_done(make_customers, fake_workflow, sql):
    uid, name, cluster = _mid_wave(make_customers, sql)
    _reconcile(name, cluster=cluster)
    counters_before = sql("SELECT completed_customers, failed_customers FROM system_upgrades")[0]
    code, data = resume(uid, {"maxConcurrency": 3})
    assert code == 202, data
    assert (data["customers"], data["attempt"], data["status"]) == (2, 2, "pending")
    new_run = data["jobId"]
    assert fake_workflow.started[-1] == (new_run, {"upgradeId": int(uid), "runName": new_run, "operation": "upgrade"})
    rows = _rows(sql, uid)
    assert {c: (r["status"], r["run_name"] == new_run) for c, r in rows.items()} == {
        "cust_0001": ("completed", False), "cust_0002": ("in_progress", False),
        "cust_0003": ("pending", True), "cust_0004": ("pending", True),
    }  # fmt: skip
    upgrade = status(uid)[1]
    assert (upgrade["status"], upgrade["haltReason"], upgrade["jobId"]) == ("pending", None, new_run)
    assert upgrade["parameters"]["maxConcurrency"] == 3
    assert [(a["attempt"], a["status"]) for a in upgrade["attempts"]] == [(1, "reconciled"), (2, "running")]
    assert sql("SELECT completed_customers, failed_customers FROM system_upgrades")[0] == counters_before
    # a second resume while the new run runs is refused
    code, again = resume(uid)
    assert code == 409 and "is pending" in again["message"], again


def test_resume_refuses_what_cannot_go_on(make_customers, fake_workflow, sql):
    make_customers(2)
    uid = deploy()["upgradeId"]
    code, data = resume(uid)
    assert code == 409 and data["message"] == (
        f"upgrade {uid} is pending; only a halted, aborted or failed upgrade can be resumed"
    )  # fmt: skip
    assert resume("999999") == (404, {"error": "UpgradeNotFound", "message": "upgrade 999999 not found"})
    sql("UPDATE system_upgrades SET status = 'halted'")
    sql("UPDATE upgrade_runs SET status = 'halted'")
    sql("UPDATE customer_upgrade_logs SET status = 'completed'")
    code, data = resume(uid)
    assert code == 409 and "nothing to resume" in data["message"]
    before = sql("SELECT * FROM customer_upgrade_logs ORDER BY id")
    assert resume(uid, [{"retryFailed": True}])[0] == 400  # a list body: not one JSON object
    assert resume(uid, {"maxConcurrency": 0})[0] == 422
    assert sql("SELECT * FROM customer_upgrade_logs ORDER BY id") == before


def test_resume_retries_failed_customers_only_when_asked_and_only_unchanged_ones(make_customers, fake_workflow, sql):
    make_customers(3)
    uid = deploy()["upgradeId"]
    sql("UPDATE system_upgrades SET status = 'halted', failed_customers = 2, halt_reason = 'budget'")
    sql("UPDATE upgrade_runs SET status = 'halted'")
    sql(
        "UPDATE customer_upgrade_logs SET status = 'failed', job_name = 'j', version_before = 'v1.1.0',"
        " version_after = 'v1.1.0' WHERE customer_id = 'cust_0001'"
    )  # helm failed, --atomic restored
    sql(
        "UPDATE customer_upgrade_logs SET status = 'failed', job_name = 'j', version_before = 'v1.1.0',"
        " version_after = 'v1.2.0' WHERE customer_id = 'cust_0002'"
    )  # changed, then failed its health check
    sql("UPDATE customer_upgrade_logs SET status = 'skipped' WHERE customer_id = 'cust_0003'")
    assert resume(uid)[1]["customers"] == 1
    sql("UPDATE system_upgrades SET status = 'halted'")
    sql("UPDATE upgrade_runs SET status = 'halted'")
    sql("UPDATE customer_upgrade_logs SET status = 'skipped' WHERE customer_id = 'cust_0003'")
    code, data = resume(uid, {"retryFailed": True})
    assert code == 202 and data["customers"] == 2, data
    rows = _rows(sql, uid)
    assert (rows["cust_0001"]["status"], rows["cust_0001"]["attempt"]) == ("pending", 2)  # a new Job name
    assert rows["cust_0002"]["status"] == "failed"  # its release was changed: roll it back, not retry
    assert sql("SELECT failed_customers FROM system_upgrades")[0]["failed_customers"] == 1


def _halted_with_nobody_started(sql: Any) -> None:
    sql("UPDATE system_upgrades SET status = 'halted', halt_reason = 'budget'")
    sql("UPDATE upgrade_runs SET status = 'halted'")
    sql("UPDATE customer_upgrade_logs SET status = 'skipped'")


def test_an_aborted_or_failed_upgrade_resumes_once_no_run_of_it_still_runs(make_customers, fake_workflow, sql):
    """Mutants killed: the refusal of a resume while a run still runs, its message replaced; the attempt read
    as `(fetchone() and {"n": 2})` (every resume attempt 2); the run name's format replaced."""
    make_customers(2)
    uid = deploy()["upgradeId"]
    run = sql("SELECT run_name FROM upgrade_runs")[0]["run_name"]
    sql("UPDATE system_upgrades SET status = 'aborted'")  # the abort is written; its run has not ended yet
    before = sql("SELECT * FROM customer_upgrade_logs ORDER BY id")
    code, data = resume(uid)
    assert code == 409 and data["message"] == (
        f"run {run} of upgrade {uid} is still finishing the customers it had started; resume once it has ended "
        f"(GET /api/upgrades/{uid} lists its runs)"
    ), data
    assert sql("SELECT * FROM customer_upgrade_logs ORDER BY id") == before
    for attempt, ended in ((2, "aborted"), (3, "failed")):
        _halted_with_nobody_started(sql)
        sql("UPDATE system_upgrades SET status = %s", ended)
        code, data = resume(uid)
        assert (code, data["customers"], data["status"]) == (202, 2, "pending"), (ended, data)
        # each resume is the next attempt, its execution named after the upgrade and the attempt
        assert data["attempt"] == attempt and data["jobId"].startswith(f"upgrade-{uid}-r{attempt}-"), data
    assert [a["attempt"] for a in status(uid)[1]["attempts"]] == [1, 2, 3]


def test_resuming_an_upgrade_that_does_not_exist_raises_not_found_and_starts_nothing(env):
    """The repository's own check (the API answers 404 before reaching it; a caller of the repository gets the
    same answer). Mutant killed: its message replaced."""
    started: list[str] = []
    with pytest.raises(UpgradeNotFound) as raised:
        factory.resumes().resume(999999, parameters={}, retry_failed=False, requested_by=None, nonce="n",
                                 start=started.append)  # fmt: skip
    assert str(raised.value) == "upgrade 999999 not found" and started == []


def test_nothing_to_resume_says_which_customers_it_looked_for(make_customers, fake_workflow, sql):
    """Mutants killed: the refusal's message and its two wordings (with and without retryFailed) replaced."""
    make_customers(2)
    uid = deploy()["upgradeId"]
    _halted_with_nobody_started(sql)
    sql("UPDATE customer_upgrade_logs SET status = 'completed'")
    code, data = resume(uid)
    assert (code, data["message"]) == (409, f"upgrade {uid} has no customer left that never started; nothing to resume")
    code, data = resume(uid, {"retryFailed": True})
    refusal = "never started or failed without changing its release; nothing to resume"
    assert (code, data["message"]) == (409, f"upgrade {uid} has no customer left that {refusal}")


def test_a_resume_publishes_one_upgrade_resumed_event_naming_its_run(make_customers, fake_workflow, sql):
    """The event of docs/events/upgrade-resumed.schema.json: its key (`resumed:<run>`, one per resume) and its
    `resume` detail (mutants killed: the key replaced; each field name of `resume` replaced)."""
    make_customers(2)
    uid = deploy()["upgradeId"]
    _halted_with_nobody_started(sql)
    code, data = resume(uid, {"retryFailed": True})
    assert code == 202, data
    run = data["jobId"]
    by = sql("SELECT requested_by FROM upgrade_runs WHERE run_name = %s", run)[0]["requested_by"]
    rows = sql("SELECT event_key, detail FROM event_outbox WHERE detail_type = %s", events.UPGRADE_RESUMED)
    resumed = {"runName": run, "attempt": 2, "customers": 2, "retryFailed": True, "requestedBy": by}
    assert [(r["event_key"], r["detail"]["resume"]) for r in rows] == [(f"resumed:{run}", resumed)]
    assert by  # the caller is named


def test_a_resume_while_another_upgrade_of_the_component_is_active_is_a_409_that_changes_nothing(
    make_customers, fake_workflow, sql
):  # fmt: skip
    """Mutant killed: the constraint name that turns the unique violation into UpgradeAlreadyActive replaced
    (the resume then fails with a 500)."""
    make_customers(2)
    first = deploy()["upgradeId"]
    _halted_with_nobody_started(sql)
    deploy(version="v1.3.0")  # another upgrade of api, pending
    before = sql("SELECT * FROM customer_upgrade_logs ORDER BY id"), sql("SELECT * FROM system_upgrades ORDER BY id")
    code, data = resume(first)
    assert code == 409 and f"upgrade {first} can be resumed once it has finished" in data["message"], data
    assert (
        sql("SELECT * FROM customer_upgrade_logs ORDER BY id"),
        sql("SELECT * FROM system_upgrades ORDER BY id"),
    ) == before
    assert len(fake_workflow.started) == 2  # the two deploys; the resume started nothing


def test_a_dead_runs_job_ending_after_a_resume_counts_in_its_own_run_and_never_halts_the_new_one(
    make_customers, fake_workflow, sql
):  # fmt: skip
    """Issue 27, defect 2. Breakage tried: `_halt_when_over_budget` without its check that the row's run
    still runs (the old run's wave, 1 of 2 failed, halted the resumed run): caught here."""
    # Given an upgrade whose execution was stopped while cust_0001's helm Job ran (cust_0002 done, cust_0003
    # never started), reconciled, and resumed: the new run has started cust_0003
    uid, old, runs, rows = _started(make_customers, sql, 3)
    job = job_running(sql, uid, "cust_0001")
    runs.claim_customer(rows["cust_0002"]["id"])
    runs.finish_customer(rows["cust_0002"]["id"], "completed", "ok", None)
    cluster = FakeCluster()
    cluster.jobs[job] = JobState(job, "running")
    _reconcile(old, cluster=cluster)
    code, resumed = resume(uid)
    assert code == 202 and resumed["customers"] == 1, resumed
    new = resumed["jobId"]
    runs.start_run(int(uid), new, "upgrade")
    runs.claim_customer(rows["cust_0003"]["id"])

    # When the old run's Job fails and the sweep records it (the new execution runs)
    cluster.jobs[job] = JobState(job, "failed", "Error: UPGRADE FAILED: boom", "BackoffLimitExceeded")
    fake_workflow.statuses[old] = "ABORTED"
    swept = reconciliation.sweep(recon=factory.reconcile(), runs=runs, executions=fake_workflow, cluster=cluster,
                                 min_age_seconds=0).as_dict()  # fmt: skip

    # Then its outcome is recorded against its own run: the row, the counters, the event
    row = _rows(sql, uid)["cust_0001"]
    assert swept["settled"] == [row["id"]] and swept["reconciled"] == []
    assert (row["status"], row["run_name"], row["error"]) == ("failed", old, "BackoffLimitExceeded")
    counters = sql("SELECT completed_customers, failed_customers FROM system_upgrades WHERE id = %s", int(uid))[0]
    assert counters == {"completed_customers": 1, "failed_customers": 1}
    [failed] = sql("SELECT detail FROM event_outbox WHERE detail_type = 'Customer Upgrade Failed'")
    assert failed["detail"]["customer"]["runName"] == old
    # and the resumed run goes on with its own, fresh failure budget: nothing halted, cust_0003 starts helm
    assert sql("SELECT halt_reason, status FROM system_upgrades WHERE id = %s", int(uid)) == [
        {"halt_reason": None, "status": "in_progress"}]  # fmt: skip
    assert sql("SELECT stop_reason FROM upgrade_runs WHERE run_name = %s", new) == [{"stop_reason": None}]
    assert sql("SELECT 1 FROM event_outbox WHERE detail_type = 'Upgrade Halted'") == []
    with factory.leases().session(rows["cust_0003"]["id"]) as lease:
        assert (lease.state, lease.stop_reason, lease.budget_exceeded()) == ("acquired", None, None)
