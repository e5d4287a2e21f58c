"""The per-customer lease, the failure budget and the abort, against the real PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from upgrader import factory
from upgrader.infra.errors import UpgradeNotFound

from tests.api.helpers import control, deploy


def _row(sql: Any, upgrade_id: str, customer_id: str) -> dict[str, Any]:
    return sql("SELECT * FROM customer_upgrade_logs WHERE upgrade_id = %s AND customer_id = %s"
               " AND operation = 'upgrade'", int(upgrade_id), customer_id)[0]  # fmt: skip


def _begin(log_id: int) -> None:
    factory.runs().claim_customer(log_id)


RELEASE_AFTER = {"revision": 3, "status": "deployed", "chartVersion": "1.4.0",
                 "versions": {"api": "v1.2.0", "dashboard": "v1.9.0", "exporter": "v1.0.0", "mosquitto": "2.0.18"}}  # fmt: skip


def test_one_operation_per_release_across_components(make_customers, fake_workflow, sql):
    # Given one customer in two upgrades of different components at once
    make_customers(1)
    api = deploy(component="api", version="v1.2.0")["upgradeId"]
    dashboard = deploy(component="dashboard", version="v2.0.0")["upgradeId"]
    first, second = _row(sql, api, "cust_0001")["id"], _row(sql, dashboard, "cust_0001")["id"]
    _begin(first)
    _begin(second)
    leases = factory.leases()
    # When the api upgrade takes the lease
    with leases.session(first) as lease:
        assert lease.state == "acquired"
    # Then the dashboard upgrade finds the release busy, says who holds it, and waits (nothing is failed)
    with leases.session(second) as lease:
        assert lease.state == "busy"
        assert lease.holder is not None and lease.holder.log_id == first
        lease.wait("busy")
    assert _row(sql, dashboard, "cust_0001")["status"] == "in_progress"
    assert _row(sql, dashboard, "cust_0001")["waiting_for"] == "busy"
    # and a retry of the holder finds its own lease again
    with leases.session(first) as lease:
        assert lease.state == "held"
    # When the api upgrade records its result, the lease is given back in that transaction
    factory.runs().finish_customer(first, "completed", "ok", None, RELEASE_AFTER)
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    # Then the dashboard upgrade takes it
    with leases.session(second) as lease:
        assert lease.state == "acquired"
    assert sql("SELECT log_id FROM customer_leases") == [{"log_id": second}]


def test_a_failing_lease_transaction_takes_nothing(make_customers, fake_workflow, sql):
    make_customers(1)
    uid = deploy()["upgradeId"]
    log_id = _row(sql, uid, "cust_0001")["id"]
    _begin(log_id)
    with pytest.raises(RuntimeError), factory.leases().session(log_id) as lease:
        assert lease.state == "acquired"
        lease.record_plan(revision_before=1, version_before="v1.1.0", chart_version="1.4.0")
        raise RuntimeError("the Job could not be created")
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0
    assert _row(sql, uid, "cust_0001")["revision_before"] is None


def test_finish_records_what_the_release_holds_and_the_inventory_follows_it(make_customers, fake_workflow, sql):
    make_customers(1, versions={"api": "v1.1.0", "dashboard": "v1.8.0"})
    uid = deploy()["upgradeId"]
    log_id = _row(sql, uid, "cust_0001")["id"]
    _begin(log_id)
    with factory.leases().session(log_id) as lease:
        lease.record_plan(revision_before=2, version_before="v1.1.0", chart_version="1.4.0")
    # the release reports dashboard v1.9.0 (changed outside): the inventory follows the release, not the request
    factory.runs().finish_customer(log_id, "completed", "ok", None, RELEASE_AFTER)
    row = _row(sql, uid, "cust_0001")
    assert (row["revision_before"], row["revision_after"], row["version_before"], row["version_after"]) == (
        2, 3, "v1.1.0", "v1.2.0")  # fmt: skip
    versions = {r["component"]: (r["version"], r["previous_version"]) for r in
                sql("SELECT * FROM customer_component_versions WHERE customer_id = 'cust_0001'")}  # fmt: skip
    assert versions["api"] == ("v1.2.0", "v1.1.0")
    assert versions["dashboard"] == ("v1.9.0", "v1.8.0")
    assert versions["mosquitto"] == ("2.0.18", None)
    customer = sql("SELECT chart_version, release_revision FROM customers WHERE id = 'cust_0001'")[0]
    assert customer == {"chart_version": "1.4.0", "release_revision": 3}
    # a retried record changes nothing and counts nothing twice
    assert factory.runs().finish_customer(log_id, "failed", "late", "late", None)[0] is False
    upgrade = sql("SELECT completed_customers, failed_customers FROM system_upgrades")[0]
    assert (upgrade["completed_customers"], upgrade["failed_customers"]) == (1, 0)


@pytest.mark.parametrize("failures_before_halt", [0, 1])
def test_the_failure_budget_halts_inside_the_wave(make_customers, fake_workflow, sql, failures_before_halt):
    # Given a single-wave upgrade tolerating N failures
    make_customers(5)
    uid = deploy(failureThreshold={"count": failures_before_halt}, maxConcurrency=2)["upgradeId"]
    rows = [_row(sql, uid, f"cust_{i:04d}")["id"] for i in range(1, 6)]
    for log_id in rows:
        _begin(log_id)
    leases = factory.leases()
    # When N+1 customers fail
    for log_id in rows[: failures_before_halt + 1]:
        with leases.session(log_id) as lease:
            assert lease.state == "acquired" and lease.budget_exceeded() is None
        factory.runs().finish_customer(log_id, "failed", None, "helm failed", None)
    # Then the upgrade is halted at once (the last wave included), naming the budget
    halt = sql("SELECT halt_reason FROM system_upgrades")[0]["halt_reason"]
    assert halt == f"wave 1 of 1: {failures_before_halt + 1} of 5 customers failed (tolerated: {failures_before_halt})"
    assert sql("SELECT stop_reason FROM upgrade_runs")[0]["stop_reason"] == halt
    # and the next customer is not started
    with leases.session(rows[failures_before_halt + 1]) as lease:
        assert lease.stop_reason == halt


def test_the_budget_is_rechecked_under_the_lease(make_customers, fake_workflow, sql):
    make_customers(3)
    uid = deploy()["upgradeId"]
    rows = [_row(sql, uid, f"cust_{i:04d}")["id"] for i in range(1, 4)]
    for log_id in rows:
        _begin(log_id)
    # a failure recorded without the halt (e.g. by a reconciler that died before halting)
    sql("UPDATE customer_upgrade_logs SET status = 'failed' WHERE id = %s", rows[0])
    with factory.leases().session(rows[1]) as lease:
        assert lease.stop_reason is None
        assert lease.budget_exceeded() == "wave 1 of 1: 1 of 3 customers failed (tolerated: 0)"


def _inside_the_gate_then(lease_transaction: Any, inside: threading.Event, stop: Any, sql: Any) -> list[Any]:
    """Run `lease_transaction` until it is inside its run's stop gate (it sets `inside`), then `stop` (an
    abort, a failure that halts), until `stop` has ended or waits at the gate (waited on as a condition).
    Returns both threads, still running where they wait."""
    worker = threading.Thread(target=lease_transaction)
    worker.start()
    assert inside.wait(30)
    stopper = threading.Thread(target=stop)
    stopper.start()
    deadline = time.monotonic() + 20
    while stopper.is_alive() and not sql("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                         " AND query LIKE '%%pg_advisory_xact_lock(hashtextextended%%'"):  # fmt: skip
        assert time.monotonic() < deadline, "the stop neither ended nor waited at the gate"
        time.sleep(0.01)
    return [worker, stopper]


def test_abort_waits_for_a_lease_transaction_and_then_no_lease_is_taken(make_customers, fake_workflow, sql):
    """The abort's commit is ordered after every lease taken before it; nothing is taken after it."""
    make_customers(2)
    uid = deploy()["upgradeId"]
    first, second = (_row(sql, uid, c)["id"] for c in ("cust_0001", "cust_0002"))
    _begin(first)
    _begin(second)
    inside, release = threading.Event(), threading.Event()
    answered: dict[str, Any] = {}

    def lease_transaction() -> None:  # takes its lease and "creates its Job" before committing
        with factory.leases().session(first) as lease:
            assert lease.state == "acquired" and lease.stop_reason is None
            lease.record_plan(revision_before=1, version_before="v1.1.0", chart_version="1.5.0")
            inside.set()
            release.wait(30)
            # a second update of the row this transaction changed re-runs its foreign key check (a key
            # share lock of the upgrade's row): it must not wait for the abort that waits for us
            lease.record_job("helm-upgrade-job")

    def abort() -> None:
        answered["result"] = control("abort", uid, {"reason": "stop"}, instance=3)

    threads = _inside_the_gate_then(lease_transaction, inside, abort, sql)
    # Then the abort waits at the run's stop gate, which the lease transaction holds
    assert "result" not in answered
    release.set()
    for thread in threads:
        thread.join(30)
    assert answered["result"][0] == 202
    # and the lease taken before the abort committed stays (its Job exists); none is taken after
    assert sql("SELECT log_id FROM customer_leases") == [{"log_id": first}]
    with factory.leases().session(second) as lease:
        assert lease.stop_reason and lease.stop_reason.startswith("aborted by")


def test_a_budget_halt_waits_for_the_lease_transactions_inside_the_gate(make_customers, fake_workflow, sql):
    """Issue 27, defect 5: a halt is as airtight as an abort. Driven step by step: a lease transaction has
    passed the gate and read no stop; then a failure over the budget is recorded; only then does the lease
    transaction create its Job. The halt must not have committed by then (it waits at the run's stop gate),
    and the next customer reads the stop.
    Breakage tried: `_halt` without `_close_stop_gates` (the halt committed while the Job was being created
    by a transaction that had read no stop): caught here."""
    make_customers(3)
    uid = deploy()["upgradeId"]  # tolerates no failure
    failing, starting, later = (_row(sql, uid, c)["id"] for c in ("cust_0001", "cust_0002", "cust_0003"))
    for log_id in (failing, starting, later):
        _begin(log_id)
    with factory.leases().session(failing) as lease:
        lease.record_job("helm-upgrade-failing")
    inside, go = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def lease_transaction() -> None:
        with factory.leases().session(starting) as lease:
            seen["read"] = (lease.state, lease.stop_reason, lease.budget_exceeded())
            inside.set()
            go.wait(30)
            # the worker creates the customer's Job now (it read no stop): what does the database say?
            seen["halt when the Job is created"] = sql("SELECT halt_reason FROM system_upgrades")[0]["halt_reason"]
            lease.record_job("helm-upgrade-starting")

    def record_failure() -> None:
        seen["recorded"] = factory.runs().finish_customer(failing, "failed", None, "helm failed", None)[0]

    # the failure's transaction either has committed (and halted) or waits at the run's stop gate
    threads = _inside_the_gate_then(lease_transaction, inside, record_failure, sql)
    go.set()
    for thread in threads:
        thread.join(30)

    assert seen["read"] == ("acquired", None, None)
    assert seen["halt when the Job is created"] is None
    halt = "wave 1 of 1: 1 of 3 customers failed (tolerated: 0)"
    assert seen["recorded"] is True
    assert sql("SELECT halt_reason FROM system_upgrades")[0]["halt_reason"] == halt
    # the lease taken inside the gate stays (its Job exists); every later lease transaction reads the stop
    assert sql("SELECT log_id FROM customer_leases") == [{"log_id": starting}]
    with factory.leases().session(later) as lease:
        assert lease.stop_reason == halt


def test_a_lease_session_of_an_unknown_row_is_a_named_error(env):
    with pytest.raises(Exception) as raised, factory.leases().session(987654):
        pass
    assert type(raised.value).__name__ == "LogRowNotFound"
    assert not isinstance(raised.value, UpgradeNotFound)


class UnreachableCluster:
    """The Kubernetes API does not answer (connection refused, timeouts)."""

    def job_name(self, spec: Any) -> str:
        from upgrader.cluster.job_spec import helm_job_name

        return helm_job_name(spec)

    def __getattr__(self, name: str) -> Any:
        from upgrader.cluster.types import ClusterTransientError

        def fail(*args: Any, **kwargs: Any) -> Any:
            raise ClusterTransientError(f"{name}: connection refused")

        return fail


def _child_event(sql: Any, upgrade_id: str, customer_id: str) -> dict[str, Any]:
    from upgrader.rollout import orchestration

    row = _row(sql, upgrade_id, customer_id)
    customer = orchestration.begin_customer({"logId": row["id"], "upgradeId": int(upgrade_id)}, runs=factory.runs())
    return {"upgradeId": int(upgrade_id), "logId": row["id"], "runName": row["run_name"], "customer": customer}


def test_an_unreachable_api_makes_a_customer_wait_not_fail(make_customers, fake_workflow, sql):
    from upgrader.cluster.types import ClusterTransientError
    from upgrader.rollout import orchestration

    make_customers(1)
    uid = deploy()["upgradeId"]
    event = _child_event(sql, uid, "cust_0001")

    waiting = orchestration.start_helm_job(event, leases=factory.leases(), cluster=UnreachableCluster())

    assert waiting["phase"] == "waiting" and waiting["unreachableSince"] > 0
    assert "Kubernetes API unreachable" in waiting["waitingFor"]
    assert sql("SELECT count(*) AS n FROM customer_leases")[0]["n"] == 0  # nothing taken
    assert _row(sql, uid, "cust_0001")["waiting_for"] == waiting["waitingFor"]
    # the outage is measured from its start, across the wait loop; past the limit the error surfaces
    again = orchestration.start_helm_job({**event, "job": waiting}, leases=factory.leases(),
                                         cluster=UnreachableCluster())  # fmt: skip
    assert again["unreachableSince"] == waiting["unreachableSince"]
    too_long = {**waiting, "unreachableSince": waiting["unreachableSince"] - orchestration.MAX_OUTAGE_SECONDS - 1}
    with pytest.raises(ClusterTransientError):
        orchestration.start_helm_job({**event, "job": too_long}, leases=factory.leases(), cluster=UnreachableCluster())


def test_an_unreachable_api_while_a_job_runs_keeps_looking(make_customers, fake_workflow, sql):
    from upgrader.rollout import orchestration

    make_customers(1)
    uid = deploy()["upgradeId"]
    event = _child_event(sql, uid, "cust_0001")
    job = {"jobName": "helm-upgrade-1-cust-0001-abcdef12-a1", "stage": "upgrade", "phase": "running"}

    looked = orchestration.check_helm_job(
        {**event, "job": job}, cluster=UnreachableCluster(), outputs=factory.helm_outputs()
    )

    assert (looked["phase"], looked["jobName"], looked["stage"]) == ("unreachable", job["jobName"], "upgrade")
    health = orchestration.check_rollout({**event, "customer": {**event["customer"], "healthCheck": {"enabled": True}}},
                                         cluster=UnreachableCluster())  # fmt: skip
    assert health["phase"] == "waiting" and "unreachable" in health["detail"]
