"""Faults injected into real runs: nothing lost, nothing counted twice."""

from __future__ import annotations

import threading

import psycopg
import pytest
from upgrader import orchestration
from upgrader.errors import DatabaseUnavailable

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


def test_database_connections_killed_mid_run(stack, make_customers, sql, database_url):
    make_customers(6)
    stack.cluster.hold()
    started = deploy(strategy="all")
    uid = started["upgradeId"]
    stack.wait_for_status(uid, lambda s: s["inProgress"] == 6)
    stack.wait_for(lambda: len(stack.cluster.jobs()) == 6)
    # When every connection of the workers is terminated while their Jobs run
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    killed = sql(
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        dbname,
    )
    assert killed, "expected worker connections to terminate"
    stack.cluster.release()
    # Then the run finishes and nothing is lost or counted twice
    assert stack.wait_execution(started["jobId"], timeout=120)["status"] == "SUCCEEDED"
    assert assert_invariants(sql, stack.cluster, uid) == {"completed": 6}


def test_kubernetes_api_errors_are_retried(stack, make_customers, sql):
    make_customers(3)
    stack.cluster.fail_next(2, status=500)
    stack.cluster.fail_next(1, status=429)
    started = deploy(strategy="all")
    assert stack.wait_execution(started["jobId"], timeout=120)["status"] == "SUCCEEDED"
    assert assert_invariants(sql, stack.cluster, started["upgradeId"]) == {"completed": 3}


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
