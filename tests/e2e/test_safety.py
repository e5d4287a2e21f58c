"""Health checks, automatic rollback, thresholds, abort, whole-upgrade rollback, stuck releases."""

from __future__ import annotations

import pytest

from tests.api.helpers import continue_, control, deploy, rollback
from tests.e2e.invariants import assert_invariants

pytestmark = pytest.mark.e2e


def abort(upgrade_id: str, **options):
    return control("abort", upgrade_id, options or None)


def rollback_all(upgrade_id: str, **options):
    return control("rollback", upgrade_id, options or None)


def test_failed_health_check_after_helm_succeeded_is_rolled_back_automatically(stack, make_customers, sql):
    # helm --wait succeeds (the pods get ready) but the new version's health path answers 503
    ids = make_customers(4)
    stack.cluster.probe_unhealthy_customers.add(ids[1])
    started = deploy(strategy="all", autoRollback=True, healthCheck={"timeoutSeconds": 10, "httpPath": "/healthz"})
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs")}
    assert rows[ids[1]]["status"] == "rolled_back"
    assert "HTTP health check /healthz failed" in rows[ids[1]]["error"]
    assert "rolled back to revision 1" in rows[ids[1]]["error"]
    assert "automatic rollback" in rows[ids[1]]["output"]
    assert [rows[c]["status"] for c in (ids[0], ids[2], ids[3])] == ["completed"] * 3
    operations = [job.manifest["spec"]["template"]["spec"]["containers"][0]["args"][0]
                  for job in stack.cluster.created_jobs if ids[1].replace("_", "-") in job.name]  # fmt: skip
    assert operations == ["upgrade", "rollback"]
    versions = {
        r["customer_id"]: r["version"] for r in sql("SELECT * FROM customer_component_versions WHERE component='api'")
    }
    assert versions[ids[1]] == "v1.1.0" and versions[ids[0]] == "v1.2.0"
    counts = assert_invariants(sql, stack.cluster, started["upgradeId"])
    assert counts == {"completed": 3, "rolled_back": 1}
    assert stack.status(started["upgradeId"])["rolledBack"] == 1


def test_failed_health_check_without_auto_rollback_fails_the_customer(stack, make_customers, sql):
    ids = make_customers(3)
    stack.cluster.probe_unhealthy_customers.add(ids[0])
    started = deploy(strategy="all", healthCheck={"timeoutSeconds": 10, "httpPath": "/healthz"})
    stack.wait_execution(started["jobId"])
    failed = stack.logs(started["upgradeId"], status="failed")["logs"]
    assert [f["customer_id"] for f in failed] == [ids[0]]
    assert "HTTP health check /healthz failed" in failed[0]["error"]
    assert len(stack.cluster.created_jobs) == 3  # no rollback Job
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_pods_that_never_get_ready_fail_helm_wait_and_atomic_restores_the_release(stack, make_customers, sql):
    # helm --wait --atomic: the new pods never become ready, helm fails after its timeout and rolls back
    ids = make_customers(2)
    stack.cluster.unhealthy_customers.add(ids[1])
    started = deploy(strategy="all", autoRollback=True)
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs")}
    assert rows[ids[0]]["status"] == "completed"
    assert rows[ids[1]]["status"] == "rolled_back"
    assert (
        "Error: UPGRADE FAILED: release customer-0002 failed, and has been rolled back due to atomic being set: "
        "context deadline exceeded" in rows[ids[1]]["error"]
    )
    assert "helm --atomic restored the previous revision" in rows[ids[1]]["error"]
    operations = [job.manifest["metadata"]["labels"]["upgrades.example.com/operation"]
                  for job in stack.cluster.created_jobs if "0002" in job.name]  # fmt: skip
    assert operations == ["upgrade"]  # helm rolled back by itself
    history = stack.cluster.release_history("customer-0002", "customer-0002")
    assert [(rev, status) for rev, status, _ in history] == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    assert history[2][2] == history[0][2]
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_release_stuck_in_pending_upgrade_is_recovered_then_upgraded(stack, make_customers, sql):
    ids = make_customers(2)
    stack.cluster.set_release_status("customer-0002", "customer-0002", "pending-upgrade")
    started = deploy(strategy="all")
    stack.wait_execution(started["jobId"])
    row = sql("SELECT * FROM customer_upgrade_logs WHERE customer_id = %s", ids[1])[0]
    assert row["status"] == "completed", row
    assert "stuck in pending-upgrade" in row["output"] and "recovering" in row["output"]
    kinds = [job.manifest["spec"]["template"]["spec"]["containers"][0]["args"][0]
             for job in stack.cluster.created_jobs if "0002" in job.name]  # fmt: skip
    assert kinds == ["rollback", "upgrade"]
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_missing_release_fails_that_customer_clearly(stack, make_customers, repo, sql):
    make_customers(2)
    repo.upsert_customer("cust_ghost", "customer-ghost", "customer-ghost", versions={"api": "v1.1.0"})
    stack.cluster.onboard("customer-ghost")  # onboarded (RBAC bindings), but no Helm release there
    started = deploy(strategy="all")
    stack.wait_execution(started["jobId"])
    failed = stack.logs(started["upgradeId"], status="failed")["logs"]
    assert [f["customer_id"] for f in failed] == ["cust_ghost"]
    assert "not found in namespace 'customer-ghost'" in failed[0]["error"]
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_failure_threshold_halts_before_the_next_batch(stack, make_customers, sql):
    ids = make_customers(9)
    stack.cluster.fail_customers.update({ids[0], ids[1]})
    started = deploy(strategy="batch", batchSize=3, failureThreshold={"count": 1})
    stack.wait_execution(started["jobId"])
    status = stack.status(started["upgradeId"])
    assert status["status"] == "halted" and "2 of 3 customers failed (tolerated: 1)" in status["haltReason"]
    assert (status["completed"], status["failed"], status["skipped"]) == (1, 2, 6)
    assert len(stack.cluster.created_jobs) == 3
    assert continue_(started["upgradeId"])[0] == 409
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_failures_within_the_threshold_go_on(stack, make_customers, sql):
    ids = make_customers(6)
    stack.cluster.fail_customers.add(ids[0])
    started = deploy(strategy="batch", batchSize=3, failureThreshold={"percent": 50})
    stack.wait_execution(started["jobId"])
    status = stack.status(started["upgradeId"])
    assert (status["status"], status["completed"], status["failed"]) == ("completed_with_failures", 5, 1)


def test_abort_while_a_wave_runs_stops_later_waves_and_rolls_back(stack, make_customers, sql):
    make_customers(6)
    stack.cluster.hold()  # every Job stays running until released
    started = deploy(strategy="batch", batchSize=2, autoRollback=False)
    uid = started["upgradeId"]
    stack.wait_for_status(uid, lambda s: s["inProgress"] == 2)
    stack.wait_for(lambda: len(stack.cluster.jobs()) == 2)  # both helm Jobs of wave 1 are running
    code, data = abort(uid, rollback=True, reason="error rate up")
    assert code == 202 and data["rollback"] is True and "error rate up" in data["haltReason"]
    assert abort(uid)[0] == 409  # already aborting
    stack.cluster.release()
    stack.wait_execution(started["jobId"])
    status = stack.status(uid)
    assert status["status"] == "rolled_back", status
    assert (status["completed"], status["skipped"], status["rolledBack"]) == (2, 4, 2)
    assert "aborted by arn:aws:sts::123456789012:assumed-role/PlatformOperator/jane" in status["haltReason"]
    kinds = [job.manifest["spec"]["template"]["spec"]["containers"][0]["args"][0] for job in stack.cluster.created_jobs]
    assert kinds == ["upgrade", "upgrade", "rollback", "rollback"]
    versions = {r["version"] for r in sql("SELECT version FROM customer_component_versions WHERE component='api'")}
    assert versions == {"v1.1.0"}
    assert_invariants(sql, stack.cluster, uid)


def test_abort_at_the_canary_gate_ends_the_execution(stack, make_customers, sql):
    make_customers(10)
    started = deploy(strategy="canary", canaryPercent=20)
    uid = started["upgradeId"]
    stack.wait_for_status(uid, lambda s: s["status"] == "awaiting_continue")
    assert abort(uid)[0] == 202
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    status = stack.status(uid)
    assert (status["status"], status["completed"], status["skipped"]) == ("aborted", 2, 8)
    assert continue_(uid)[0] == 409
    assert_invariants(sql, stack.cluster, uid)


def test_rollback_of_a_whole_upgrade_goes_last_wave_first(stack, make_customers, sql):
    ids = make_customers(6)
    started = deploy(strategy="batch", batchSize=2)
    uid = started["upgradeId"]
    assert rollback_all(uid)[0] == 409  # still running (or pending)
    stack.wait_execution(started["jobId"])
    code, data = rollback_all(uid, maxConcurrency=1)
    assert code == 202 and data["customers"] == 6 and data["waves"] == [2, 2, 2]
    stack.wait_execution(data["jobId"])
    status = stack.status(uid)
    assert status["status"] == "rolled_back" and status["rolledBack"] == 6
    rollbacks = [
        job
        for job in stack.cluster.created_jobs
        if job.manifest["spec"]["template"]["spec"]["containers"][0]["args"][0] == "rollback"
    ]
    order = [job.manifest["metadata"]["labels"]["upgrades.example.com/customer-id"] for job in rollbacks]
    assert order[:2] and set(order[:2]) == set(ids[4:]) and set(order[4:]) == set(ids[:2])
    assert {r["version"] for r in sql("SELECT version FROM customer_component_versions WHERE component='api'")} == {
        "v1.1.0"
    }
    assert rollback_all(uid)[0] == 409  # nothing left
    assert rollback(uid, ids[0])[0] == 409  # already rolled back
    assert_invariants(sql, stack.cluster, uid)


def test_a_wave_that_cannot_run_halts_the_upgrade(stack, make_customers, sql, monkeypatch):
    # Given the second wave's manifest disappears between PrepareWave and its Map Run
    from upgrader.rollout import orchestration

    make_customers(4)
    real = orchestration.prepare_wave

    def lose_second_manifest(event, **kwargs):
        state = real(event, **kwargs)
        if state["wave"] == 1:
            stack.runtime.engine.s3.delete_object(
                Bucket=state["bucket"], Key=f"{state['manifestPrefix']}/wave-{state['wave']}.json"
            )
        return state

    monkeypatch.setattr(orchestration, "prepare_wave", lose_second_manifest)
    started = deploy(strategy="batch", batchSize=2)
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    status = stack.status(started["upgradeId"])
    assert status["status"] == "halted" and "wave 2 of 2 could not run" in status["haltReason"]
    assert (status["completed"], status["skipped"]) == (2, 2)
    assert_invariants(sql, stack.cluster, started["upgradeId"])
