"""Faults injected into real runs: nothing lost, nothing counted twice."""

from __future__ import annotations

import copy
import threading

import psycopg
import pytest
from upgrader.infra import db as db_module
from upgrader.infra.errors import DatabaseUnavailable
from upgrader.rollout import orchestration

from tests.api.helpers import deploy, rollback
from tests.e2e.invariants import assert_invariants

pytestmark = pytest.mark.e2e


def test_worker_that_raises_after_its_side_effect_is_retried_without_double_counting(
    stack, make_customers, sql, monkeypatch
):
    # Given finish_customer records the result, then "crashes" once per customer (Lambda timed out
    # after the commit, say): Step Functions retries it
    ids = make_customers(5)
    real = orchestration.finish_customer
    crashed: set[int] = set()
    lock = threading.Lock()

    def crash_after_commit(event, **kwargs):
        result = real(event, **kwargs)
        with lock:
            first = event["logId"] not in crashed
            crashed.add(event["logId"])
        if first:
            raise DatabaseUnavailable("connection lost after commit (injected)")
        return result

    monkeypatch.setattr(orchestration, "finish_customer", crash_after_commit)
    started = deploy(strategy="all")
    assert stack.wait_execution(started["jobId"], timeout=120)["status"] == "SUCCEEDED"
    # Then every customer is counted once
    assert len(crashed) == 5
    counts = assert_invariants(sql, stack.cluster, started["upgradeId"])
    assert counts == {"completed": 5}
    assert stack.status(started["upgradeId"])["completed"] == 5
    assert len(stack.cluster.jobs()) == len(ids)


def _kill_worker_connections(sql, database_url: str) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    killed = sql(
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        dbname,
    )
    assert killed, "expected worker connections to terminate"


@pytest.mark.parametrize("told", [False, True], ids=["dropped-silently", "ended-by-the-server"])
def test_database_connections_killed_mid_run(stack, make_customers, sql, database_url, monkeypatch, told):
    """dropped-silently: as if the server's FATAL message never arrived (a failover whose old host vanished), the
    workers meet their dead connections: their own error, and the state machine's Retry. ended-by-the-server: the
    workers see the server's message on the socket before their next unit of work and reconnect: nobody fails."""
    if not told:
        monkeypatch.setattr(db_module, "_server_spoke", lambda conn: False)
    make_customers(6)
    stack.cluster.hold()
    started = deploy(strategy="all")
    uid = started["upgradeId"]
    stack.wait_for_status(uid, lambda s: s["inProgress"] == 6)
    stack.wait_for(lambda: len(stack.cluster.jobs()) == 6)
    # When every connection of the workers is terminated while their Jobs run
    _kill_worker_connections(sql, database_url)
    failures_before = len(stack.runtime.engine.failures)
    stack.cluster.release()
    # Then the run ends, nothing lost or counted twice
    assert stack.wait_execution(started["jobId"], timeout=120)["status"] == "SUCCEEDED"
    assert assert_invariants(sql, stack.cluster, uid) == {"completed": 6}
    met = [f for f in stack.runtime.engine.failures[failures_before:] if f.error_type == "DatabaseUnavailable"]
    if told:  # the workers replaced their connections before using them
        assert met == [], met
    else:  # they met them (their own error, reported to the state machine) and the Retry ran them again
        assert met and all("connection lost" in f.message for f in met), stack.runtime.engine.failures


def test_kubernetes_api_errors_are_retried(stack, make_customers, sql):
    # Given the API server answers 500 twice and then 429 to the next requests, whoever makes them
    make_customers(3)
    stack.cluster.fail_next(2, status=500)
    stack.cluster.fail_next(1, status=429)
    started = deploy(strategy="all")
    assert stack.wait_execution(started["jobId"], timeout=120)["status"] == "SUCCEEDED"
    # Then every injected answer was served to a request of ours, once per request (the client does not
    # retry them silently): the workers turned each into a wait, and the state machine's poll loop,
    # not luck, carried the customers on ...
    assert not stack.cluster.unserved_faults() and sum(f.served for f in stack.cluster.faults) == 3
    assert [f.status for f in stack.cluster.faults] == [500, 429]
    # ... and nothing is lost or counted twice
    assert assert_invariants(sql, stack.cluster, started["upgradeId"]) == {"completed": 3}


def test_finished_jobs_whose_pod_logs_cannot_be_read_are_recorded_from_their_status(stack, make_customers, sql):
    """Issue 27, defect 10 (seen on a real kube-apiserver: pods/log answers 5xx when it cannot reach the
    node's kubelet). Breakage tried: `_read_job_log` raising on 5xx again (main): CheckHelmJob looped as
    "unreachable" (for up to MAX_OUTAGE_SECONDS), the execution was still RUNNING after 120 s and the
    customers in_progress: the test failed."""
    # Given every pod log unreadable for the whole run, helm succeeding for every customer
    make_customers(4)
    fault = stack.cluster.kubelet_unreachable(500, seconds=3600)
    # When an upgrade runs through the real state machine
    started = deploy(strategy="all")
    assert stack.wait_execution(started["jobId"], timeout=120)["status"] == "SUCCEEDED"
    # Then every customer is recorded from its Job's status and its release (the new version), once
    assert assert_invariants(sql, stack.cluster, started["upgradeId"]) == {"completed": 4}
    rows = sql("SELECT output, error, version_after FROM customer_upgrade_logs WHERE upgrade_id = %s",
               int(started["upgradeId"]))  # fmt: skip
    assert {(r["version_after"], r["error"]) for r in rows} == {("v1.2.0", None)}
    # and each record says why helm's output is missing: the API server's answer about the kubelet
    for row in rows:
        assert row["output"].startswith("[helm output unavailable: pod log unavailable: HTTP 500 "), row
        assert "10250/containerLogs" in row["output"], row
    assert fault.served >= 4


def test_rollback_during_an_active_customer_upgrade_is_409(stack, make_customers, sql):
    ids = make_customers(2)
    stack.cluster.hold()
    started = deploy(strategy="all")
    stack.wait_for_status(started["upgradeId"], lambda s: s["inProgress"] == 2)
    code, data = rollback(started["upgradeId"], ids[0])
    assert code == 409 and "still in_progress" in data["message"]
    stack.cluster.release()
    stack.wait_execution(started["jobId"])
    assert assert_invariants(sql, stack.cluster, started["upgradeId"]) == {"completed": 2}


def test_every_worker_delivered_twice_through_the_real_state_machine(stack, make_customers, sql, monkeypatch):
    # Given every step of the state machine runs twice per delivery (at-least-once delivery)
    from upgradectl.local.functions import WORKER_FUNCTIONS

    calls: dict[str, int] = dict.fromkeys(WORKER_FUNCTIONS, 0)
    lock = threading.Lock()
    for name in WORKER_FUNCTIONS:
        real = getattr(orchestration, name)

        def twice(event, _real=real, _name=name, **kwargs):
            _real(event, **kwargs)
            with lock:
                calls[_name] += 2
            return _real(event, **kwargs)

        monkeypatch.setattr(orchestration, name, twice)
    ids = make_customers(8)
    stack.cluster.fail_customers.add(ids[3])
    started = deploy(strategy="canary", canaryPercent=25)
    stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    from tests.api.helpers import continue_

    assert continue_(started["upgradeId"])[0] == 200
    assert stack.wait_execution(started["jobId"], timeout=120)["status"] == "SUCCEEDED"
    # Then the result is the one of a single delivery: one Job per customer, each counted once
    assert (
        all(calls[name] > 0 for name in WORKER_FUNCTIONS if name != "await_continue") and calls["await_continue"] == 2
    )
    counts = assert_invariants(sql, stack.cluster, started["upgradeId"])
    assert counts == {"completed": 7, "failed": 1}
    assert len(stack.cluster.jobs()) == 8


@pytest.mark.parametrize("worker", ["prepare_run", "begin_customer", "start_helm_job", "evaluate_wave", "finalize_run"])
def test_worker_crashing_after_its_side_effect_is_retried_safely(stack, make_customers, sql, monkeypatch, worker):
    real = getattr(orchestration, worker)
    crashed: list[int] = []
    lock = threading.Lock()

    def crash_once(event, **kwargs):
        result = real(event, **kwargs)
        with lock:
            first = not crashed
            crashed.append(1)
        if first:
            raise DatabaseUnavailable(f"{worker}: connection lost after the side effect (injected)")
        return result

    monkeypatch.setattr(orchestration, worker, crash_once)
    make_customers(4)
    started = deploy(strategy="batch", batchSize=2)
    assert stack.wait_execution(started["jobId"], timeout=120)["status"] == "SUCCEEDED"
    assert len(crashed) >= 2  # crashed once, then retried by the state machine
    assert assert_invariants(sql, stack.cluster, started["upgradeId"]) == {"completed": 4}
    assert stack.status(started["upgradeId"])["status"] == "completed"
    assert len(stack.cluster.jobs()) == 4


def test_racing_deploys_start_one_execution(stack, make_customers, sql):
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.events import api_event
    from tests.support.functions import invoke

    make_customers(3)
    payload = {"component": "dashboard", "version": "v2.0.0", "strategy": "all"}
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = sorted(
            pool.map(lambda i: invoke("api_deploy", api_event("api_deploy", body=payload), i)["statusCode"], range(6))
        )
    assert codes == [202] + [409] * 5
    executions = stack.runtime.sfn.list_executions(stateMachineArn=stack.runtime.state_machine_arn)["executions"]
    assert len(executions) == 1
    upgrade_id = sql("SELECT id FROM system_upgrades")[0]["id"]
    stack.wait_execution(executions[0]["name"])
    assert assert_invariants(sql, stack.cluster, upgrade_id) == {"completed": 3}


def test_every_worker_delivered_twice_at_the_same_moment(stack, make_customers, sql, monkeypatch):
    # Given every step of the state machine is delivered twice AT ONCE (two invocations overlapping,
    # released together): the state machine gets the first one's outcome, the second is a ghost
    from upgradectl.local.functions import WORKER_FUNCTIONS

    overlapped: dict[str, int] = dict.fromkeys(WORKER_FUNCTIONS, 0)
    lock = threading.Lock()
    for name in WORKER_FUNCTIONS:
        real = getattr(orchestration, name)

        def both_at_once(event, _real=real, _name=name, **kwargs):
            barrier = threading.Barrier(2, timeout=60)
            outcomes: list[tuple[bool, object]] = [(False, None), (False, None)]

            def deliver(i: int) -> None:
                barrier.wait()
                try:
                    outcomes[i] = (True, _real(copy.deepcopy(event), **kwargs))
                except Exception as exc:  # noqa: BLE001 - the ghost's error is only recorded
                    outcomes[i] = (False, exc)

            ghost = threading.Thread(target=deliver, args=(1,))
            ghost.start()
            deliver(0)
            ghost.join()
            with lock:
                overlapped[_name] += 1
            ok, value = outcomes[0]
            if not ok:
                raise value  # type: ignore[misc]
            return value

        monkeypatch.setattr(orchestration, name, both_at_once)
    ids = make_customers(8)
    stack.cluster.fail_customers.add(ids[3])

    # When a canary upgrade runs through its gate to the end
    started = deploy(strategy="canary", canaryPercent=25, maxConcurrency=4, failureThreshold={"count": 1})
    stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    from tests.api.helpers import continue_

    assert continue_(started["upgradeId"])[0] == 200
    assert stack.wait_execution(started["jobId"], timeout=180)["status"] == "SUCCEEDED"

    # Then the result is the one of a single delivery: one Job per customer (counted at the API
    # server), each customer counted once, never more Jobs at once than allowed
    assert all(
        overlapped[name] > 0 for name in ("begin_customer", "start_helm_job", "check_helm_job", "finish_customer")
    )
    counts = assert_invariants(sql, stack.cluster, started["upgradeId"])
    assert counts == {"completed": 7, "failed": 1}
    assert sum(1 for job in stack.cluster.created_jobs if job.status == 201) == 8
    assert stack.status(started["upgradeId"])["completed"] == 7
