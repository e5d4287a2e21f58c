"""Change exactly what was asked on a shared release (issue 8), through the real state machine, the real
handlers, PostgreSQL and the simulated cluster playing Helm faithfully (its lock, its revisions).

Every customer runs ONE Helm release holding all four components, so: one operation per release at a
time (the lease), rollbacks that restore only their own component, a failure budget that holds inside
every wave, and an abort after which no Job is created for a customer that had not taken its lease.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import pytest
from upgrader.cluster.release import parse_release

from tests.api.helpers import control, deploy, rollback
from tests.e2e.invariants import assert_invariants
from tests.support.events import api_event
from tests.support.functions import invoke
from upgradectl.local.cluster import SimulatedCluster

pytestmark = pytest.mark.e2e

OPERATION = "upgrades.example.com/operation"
UPGRADE_ID = "upgrades.example.com/upgrade-id"


def runs_on(cluster: SimulatedCluster, customer_id: str) -> dict[str, str | None]:
    """What the customer's release runs now: each component's tag, read from Helm's own record."""
    name = f"customer-{customer_id.removeprefix('cust_')}"
    record = cluster.release_record(name, name)
    assert record is not None
    release = parse_release(record)
    return {c: release.version_of(f"{c}.image.tag") for c in ("api", "dashboard", "exporter", "mosquitto")}


def inventory(sql: Any, customer_id: str) -> dict[str, str]:
    rows = sql("SELECT component, version FROM customer_component_versions WHERE customer_id = %s", customer_id)
    return {r["component"]: r["version"] for r in rows}


def finished(stack: Any, started: dict[str, Any]) -> dict[str, Any]:
    execution = stack.wait_execution(started["jobId"])
    assert execution["status"] == "SUCCEEDED", execution
    return stack.status(started["upgradeId"])


def rolled_back(stack: Any, upgrade_id: str, customer_id: str) -> dict[str, Any]:
    code, data = rollback(upgrade_id, customer_id)
    assert code == 202, data
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"
    entry = next(e for e in stack.logs(upgrade_id, operation="rollback")["logs"] if e["id"] == data["rollbackId"])
    assert entry["status"] == "completed", entry
    return entry


# --------------------------------------------------------------------------- component-scoped rollback
def test_rolling_back_api_keeps_the_dashboard_upgraded_since(stack, make_customers, sql):
    # Given api upgraded, then dashboard upgraded, on the same customer's release
    [customer] = make_customers(1)
    api = deploy(component="api", version="v1.2.0", strategy="all")
    finished(stack, api)
    dashboard = deploy(component="dashboard", version="v2.0.0", strategy="all")
    finished(stack, dashboard)
    assert runs_on(stack.cluster, customer)["api"] == "v1.2.0"
    assert runs_on(stack.cluster, customer)["dashboard"] == "v2.0.0"

    # When the api upgrade is rolled back for that customer
    entry = rolled_back(stack, api["upgradeId"], customer)

    # Then the release holds the old api and the new dashboard (helm rollback to "the previous revision"
    # would have reverted the dashboard and kept the new api)
    release = runs_on(stack.cluster, customer)
    assert (release["api"], release["dashboard"]) == ("v1.1.0", "v2.0.0")
    # by restoring only the api tag, on the chart the release runs
    job = next(j for j in stack.cluster.created_jobs if j.name == entry["job_name"])
    assert job.manifest["metadata"]["labels"][OPERATION] == "restore"
    args = job.manifest["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--set-string") + 1] == "api.image.tag=v1.1.0"
    assert "--reset-then-reuse-values" in args and args[args.index("--version") + 1] == "1.5.0"
    # and the log says what the release held before and after, and the inventory agrees with the release
    assert (entry["version_before"], entry["version_after"]) == ("v1.2.0", "v1.1.0")
    assert inventory(sql, customer)["api"] == "v1.1.0" and inventory(sql, customer)["dashboard"] == "v2.0.0"
    assert {c: v for c, v in inventory(sql, customer).items()} == {c: v for c, v in release.items() if v}


def test_a_later_upgrade_of_the_same_component_is_never_reverted_behind_its_back(stack, make_customers, sql):
    [customer] = make_customers(1)
    first = deploy(component="api", version="v1.2.0", strategy="all")
    finished(stack, first)
    second = deploy(component="api", version="v1.3.0", strategy="all")
    finished(stack, second)

    # Rolling back the first is refused, naming the second
    code, data = rollback(first["upgradeId"], customer)
    assert code == 409
    assert f"upgraded again since, by upgrade {second['upgradeId']} (v1.3.0, completed)" in data["message"]
    assert runs_on(stack.cluster, customer)["api"] == "v1.3.0"
    # The second rolls back exactly (the release is still at the revision it produced): to v1.2.0
    entry = rolled_back(stack, second["upgradeId"], customer)
    job = next(j for j in stack.cluster.created_jobs if j.name == entry["job_name"])
    assert job.manifest["metadata"]["labels"][OPERATION] == "rollback"
    assert runs_on(stack.cluster, customer)["api"] == "v1.2.0"
    # then the first one can be rolled back too: to the customer's own previous version
    rolled_back(stack, first["upgradeId"], customer)
    assert runs_on(stack.cluster, customer)["api"] == "v1.1.0"
    assert inventory(sql, customer)["api"] == "v1.1.0"


# ------------------------------------------------------------------- rollback of a failed health check
def _health_checked_upgrade(stack: Any, make_customers: Any) -> tuple[list[str], dict[str, Any]]:
    """4 customers; the second's application answers 503 on /healthz after the upgrade (helm succeeds)."""
    ids = make_customers(4)
    stack.cluster.probe_unhealthy_customers.add(ids[1])
    started = deploy(component="api", version="v1.2.0", strategy="all", failureThreshold={"count": 1},
                     healthCheck={"httpPath": "/healthz", "timeoutSeconds": 10})  # fmt: skip
    status = finished(stack, started)
    assert (status["completed"], status["failed"]) == (3, 1)
    stack.cluster.probe_unhealthy_customers.clear()
    return ids, started


def test_a_customer_whose_health_check_failed_is_rolled_back_alone(stack, make_customers, sql):
    ids, started = _health_checked_upgrade(stack, make_customers)
    row = stack.logs(started["upgradeId"], customerId=ids[1])["logs"][0]
    assert row["status"] == "failed" and "HTTP health check /healthz failed" in row["error"]
    assert (row["version_before"], row["version_after"]) == ("v1.1.0", "v1.2.0")  # the release was changed
    assert runs_on(stack.cluster, ids[1])["api"] == "v1.2.0"

    rolled_back(stack, started["upgradeId"], ids[1])

    assert runs_on(stack.cluster, ids[1])["api"] == "v1.1.0"
    assert [runs_on(stack.cluster, c)["api"] for c in (ids[0], ids[2], ids[3])] == ["v1.2.0"] * 3


def test_a_customer_whose_health_check_failed_is_rolled_back_by_the_whole_upgrade_rollback(stack, make_customers):
    ids, started = _health_checked_upgrade(stack, make_customers)

    code, data = control("rollback", started["upgradeId"])

    assert code == 202, data
    assert (data["customers"], data["leftOut"]) == (4, [])
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"
    assert [runs_on(stack.cluster, c)["api"] for c in ids] == ["v1.1.0"] * 4
    assert stack.status(started["upgradeId"])["status"] == "rolled_back"


# ----------------------------------------------------------------------- the budget inside every wave
def _budget_outcome(stack: Any, sql: Any, started: dict[str, Any], wave: int) -> dict[str, int]:
    status = finished(stack, started)
    assert status["status"] == "halted", status
    assert status["haltReason"].startswith(f"wave {wave + 1} of ")
    rows = sql("SELECT status, count(*) AS n FROM customer_upgrade_logs WHERE upgrade_id = %s AND wave = %s"
               " GROUP BY status", int(started["upgradeId"]), wave)  # fmt: skip
    assert_invariants(sql, stack.cluster, started["upgradeId"])
    return {r["status"]: int(r["n"]) for r in rows}


def test_a_single_wave_upgrade_halts_inside_the_wave_when_its_budget_is_spent(stack, make_customers, sql):
    # Given 12 customers, the first three failing, one wave, no failure tolerated, two at a time
    ids = make_customers(12)
    stack.cluster.fail_customers.update(ids[:3])
    started = deploy(component="api", version="v1.2.0", strategy="all", failureThreshold={"count": 0},
                     maxConcurrency=2)  # fmt: skip

    counts = _budget_outcome(stack, sql, started, wave=0)

    # Then the upgrade halted inside the wave: at most threshold + maxConcurrency failed, the rest skipped
    assert 1 <= counts.get("failed", 0) <= 0 + 2, counts
    assert counts.get("skipped", 0) >= 12 - 2 - 2, counts
    assert sum(counts.values()) == 12
    # and no helm Job ran for a skipped customer
    skipped = {r["customer_id"] for r in sql("SELECT customer_id FROM customer_upgrade_logs WHERE status = 'skipped'")}
    started_jobs = {j.manifest["metadata"]["annotations"]["upgrades.example.com/customer-id"]
                    for j in stack.cluster.created_jobs}  # fmt: skip
    assert skipped and not (skipped & started_jobs)


def test_the_last_wave_of_a_batch_upgrade_halts_inside_the_wave_too(stack, make_customers, sql):
    ids = make_customers(12)
    stack.cluster.fail_customers.update(ids[6:9])  # the first three of the second (last) wave
    started = deploy(component="api", version="v1.2.0", strategy="batch", batchSize=6, maxConcurrency=2,
                     failureThreshold={"count": 0})  # fmt: skip

    counts = _budget_outcome(stack, sql, started, wave=1)

    assert 1 <= counts.get("failed", 0) <= 2 and counts.get("skipped", 0) >= 6 - 4, counts
    first_wave = sql("SELECT status FROM customer_upgrade_logs WHERE wave = 0")
    assert {r["status"] for r in first_wave} == {"completed"}


# ------------------------------------------------------------------ one operation per release at a time
def test_two_components_deployed_at_once_over_the_same_customers_both_land(stack, make_customers, sql):
    # Given two deploys of different components over the same 6 customers, at the same moment, with Jobs
    # long enough that both want the same releases at once
    ids = make_customers(6)
    stack.cluster.job_duration_seconds = 0.3
    results: dict[str, dict[str, Any]] = {}

    def start(component: str, version: str, instance: int) -> None:  # one Lambda environment each
        request = {"component": component, "version": version, "strategy": "all", "maxConcurrency": 6}
        response = invoke("api_deploy", api_event("api_deploy", body=request), instance)
        results[component] = {"code": response["statusCode"], **json.loads(response["body"])}

    threads = [threading.Thread(target=start, args=args) for args in (("api", "v1.2.0", 1), ("dashboard", "v2.0.0", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {c: r["code"] for c, r in results.items()} == {"api": 202, "dashboard": 202}, results

    # Then no customer failed (helm would refuse a second operation on a release that is pending)
    for started in results.values():
        status = finished(stack, started)
        assert (status["status"], status["completed"], status["failed"]) == ("completed", 6, 0), status
        assert_invariants(sql, stack.cluster, started["upgradeId"])
    # and every release ends with both new versions; the inventory agrees
    for customer in ids:
        release = runs_on(stack.cluster, customer)
        name = f"customer-{customer.removeprefix('cust_')}"
        assert (release["api"], release["dashboard"]) == ("v1.2.0", "v2.0.0"), (
            stack.cluster.release_history(name, name),
            sql("SELECT * FROM customer_upgrade_logs WHERE customer_id = %s ORDER BY id", customer),
        )
        assert (inventory(sql, customer)["api"], inventory(sql, customer)["dashboard"]) == ("v1.2.0", "v2.0.0")
    # and the customers' releases never had two helm operations at once: each release's revisions are
    # one per operation, every one of them deployed in turn
    for customer in ids:
        name = f"customer-{customer.removeprefix('cust_')}"
        states = [status for _, status, _ in stack.cluster.release_history(name, name)]
        assert states == ["superseded", "superseded", "deployed"], states
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0


# ------------------------------------------------------------------------------------ an airtight abort
def test_no_job_is_created_after_the_abort_answered(stack, make_customers, sql):
    """An abort racing a wave of 50, 20 times: no helm Job reaches the API server after the 202."""
    make_customers(50)
    stack.cluster.job_duration_seconds = 0.02
    chooser = random.Random(20261128)  # noqa: S311 - a repeatable spread of race points, not security
    for round_ in range(20):
        stack.cluster.hold()  # Jobs run until released: the wave is in full flight when the abort comes
        before = len(stack.cluster.created_jobs)
        started = deploy(component=("api", "dashboard", "exporter", "mosquitto")[round_ % 4],
                         version=f"v9.{round_}.0", strategy="all", maxConcurrency=50)  # fmt: skip
        wanted = chooser.randint(0, 25)
        stack.wait_for(lambda b=before, w=wanted: len(stack.cluster.created_jobs) - b >= w, timeout=60)
        code, data = control("abort", started["upgradeId"], {"reason": f"round {round_}"})
        answered = time.time()
        assert code == 202, data
        late = [job for job in stack.cluster.created_jobs[before:] if job.time > answered]
        stack.cluster.release()
        status = finished(stack, started)
        assert not late, f"round {round_}: Jobs created after the abort answered: {[j.name for j in late]}"
        assert status["status"] == "aborted"
        jobs = len(stack.cluster.created_jobs) - before
        # every customer without a Job was skipped; every customer with one finished it
        assert status["skipped"] == 50 - jobs, (round_, status, jobs)
        assert status["completed"] == jobs
        assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_an_abort_during_a_one_hour_bake_ends_the_upgrade_at_once(stack, make_customers):
    make_customers(4)
    started = deploy(component="api", version="v1.2.0", strategy="batch", batchSize=2, bakeSeconds=3600)
    baking = stack.wait_for_status(started["upgradeId"], lambda s: s["gate"] == "bake")
    assert baking["gateUntil"] and baking["completed"] == 2

    code, data = control("abort", started["upgradeId"], {"reason": "bad canary metrics"})

    assert code == 202, data
    status = stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "aborted", timeout=10)
    assert (status["completed"], status["skipped"], status["gate"]) == (2, 2, None)
    assert stack.wait_execution(started["jobId"], timeout=10)["status"] == "SUCCEEDED"


# ------------------------------------------------------------- a retried StartHelmJob adopts its Job
# Step Functions reports a Lambda that timed out or died as Sandbox.Timedout or as Lambda.Unknown.
@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("Sandbox.Timedout", "Task timed out after 120.00 seconds"),
        ("Lambda.Unknown", "The cause could not be determined"),
    ],
)
def test_start_helm_job_dying_after_the_create_is_retried_and_adopts_the_job(
    stack, make_customers, sql, monkeypatch, error, message
):
    from upgrader.cluster.jobs import KubernetesClusterGateway

    from upgradectl.local.lambda_runtime import SimulatedLambdaFailure

    ids = make_customers(5)
    real = KubernetesClusterGateway.start_helm_job
    died: set[int] = set()

    def create_then_die(self: KubernetesClusterGateway, spec: Any) -> str:
        name = real(self, spec)
        if spec.log_id not in died:  # the Lambda times out after the Job exists, before anything is recorded
            died.add(spec.log_id)
            raise SimulatedLambdaFailure(error, message)
        return name

    monkeypatch.setattr(KubernetesClusterGateway, "start_helm_job", create_then_die)
    started = deploy(component="api", version="v1.2.0", strategy="all")
    status = finished(stack, started)

    assert len(died) == 5
    assert [f.error_type for f in stack.runtime.engine.failures] == [error] * 5
    assert (status["status"], status["completed"]) == ("completed", 5)
    # one Job per customer: the retry found it and adopted it instead of creating a second
    assert sorted(j.manifest["metadata"]["annotations"]["upgrades.example.com/customer-id"]
                  for j in stack.cluster.created_jobs) == sorted(ids)  # fmt: skip
    rows = stack.logs(started["upgradeId"])["logs"]
    assert all(r["job_name"] and r["revision_after"] == 2 for r in rows)
    assert_invariants(sql, stack.cluster, started["upgradeId"])


def test_abort_stops_a_running_rollback_run(stack, make_customers, sql):
    # Given a whole-upgrade rollback of 6 customers, one at a time, its first Job held
    make_customers(6)
    started = deploy(component="api", version="v1.2.0", strategy="all")
    finished(stack, started)
    stack.cluster.hold()
    jobs_before = len(stack.cluster.created_jobs)
    code, data = control("rollback", started["upgradeId"], {"maxConcurrency": 1})
    assert code == 202, data
    stack.wait_for(lambda: len(stack.cluster.created_jobs) > jobs_before)

    # When the upgrade is aborted
    code, aborted = control("abort", started["upgradeId"], {"reason": "stop the rollback"})

    # Then the rollback run is told to stop: the running customer finishes, no other starts
    assert code == 202, aborted
    assert aborted["stoppedRuns"] == [data["jobId"]]
    stack.cluster.release()
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"
    rows = stack.logs(started["upgradeId"], operation="rollback")["logs"]
    assert sorted(r["status"] for r in rows) == ["completed"] + ["skipped"] * 5
    assert len(stack.cluster.created_jobs) == jobs_before + 1
    assert stack.status(started["upgradeId"])["status"] == "rollback_incomplete"


def test_a_job_killed_mid_upgrade_is_followed_by_a_look_at_the_release_and_a_recovery(stack, make_customers, sql):
    # Given the upgrade Job of one customer is killed by its deadline while helm works (release left
    # pending-upgrade, no --atomic rollback could run)
    ids = make_customers(3)
    killed = f"customer-{ids[1].removeprefix('cust_')}"

    def kill_upgrade(manifest: dict[str, Any]) -> str | None:
        labels = manifest["metadata"]["labels"]
        if labels["upgrades.example.com/target-namespace"] == killed and labels[OPERATION] == "upgrade":
            return "timeout"
        return None

    stack.cluster.outcome = kill_upgrade
    started = deploy(component="api", version="v1.2.0", strategy="all", failureThreshold={"count": 1})
    status = finished(stack, started)

    # Then before the customer's result was recorded, the release was looked at and recovered
    assert (status["completed"], status["failed"]) == (2, 1)
    row = stack.logs(started["upgradeId"], customerId=ids[1])["logs"][0]
    assert row["status"] == "failed" and "DeadlineExceeded" in row["error"]
    assert "was left pending-upgrade" in row["error"] and "release recovered to revision" in row["error"]
    history = stack.cluster.release_history(killed, killed)
    assert history[-1][1] == "deployed"  # not stuck: the next operation can run
    assert runs_on(stack.cluster, ids[1])["api"] == "v1.1.0"
    assert (row["version_before"], row["version_after"]) == ("v1.1.0", "v1.1.0")
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    assert_invariants(sql, stack.cluster, started["upgradeId"])
