"""An abort that lands between a customer's BeginCustomer and its StartHelmJob, driven step by step (no
race to hope for): BeginCustomer claims the customer, the abort answers 202, then StartHelmJob runs.
Only the lease transaction's own stop check stands between that customer and a helm Job. The real
workers' domain functions, PostgreSQL and the simulated cluster over HTTP (the product's gateway)."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader import factory
from upgrader.rollout import orchestration

from tests.api.helpers import control, deploy
from upgradectl.local.cluster import SimulatedCluster

pytestmark = pytest.mark.e2e


@pytest.fixture
def gateway_env(env: dict[str, str], cluster: SimulatedCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers' cluster gateway (`factory.cluster()`) pointed at the simulated cluster, as a Lambda's."""
    for key, value in {"CLUSTER_MODE": "url", "KUBE_API_URL": cluster.url,
                       "KUBE_TOKEN_FILE": str(cluster.jobs_token_file)}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    factory.reset()


def _begun(sql: Any, upgrade_id: str, customer_id: str) -> dict[str, Any]:
    """BeginCustomer for one customer: the child event StartHelmJob receives."""
    row = sql("SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s AND customer_id = %s",
              int(upgrade_id), customer_id)[0]  # fmt: skip
    customer = orchestration.begin_customer({"logId": row["id"], "upgradeId": int(upgrade_id)}, runs=factory.runs())
    assert customer["action"] == "run", customer
    return {"upgradeId": int(upgrade_id), "logId": row["id"], "customer": customer, "pollSeconds": 0}


def test_a_customer_begun_before_the_abort_answered_creates_no_job_after_it(
    cluster, make_customers, fake_workflow, gateway_env, sql
):
    """Breakage tried: `_stopped` in orchestration ignoring the run's stop reason (`reason =
    lease.budget_exceeded()`): the second customer's helm Job was created after the abort's 202; this test
    failed. Also tried: `_SESSION_READ` reading `NULL AS stop_reason` instead of the run's: failed too."""
    ids = make_customers(2)
    deployed = deploy(strategy="all")  # no execution runs it (a fake workflow): this test plays its steps
    uid = deployed["upgradeId"]
    orchestration.prepare_run({"upgradeId": uid, "runName": deployed["jobId"], "operation": "upgrade"},
                              runs=factory.runs())  # fmt: skip
    # Given both customers begun, the first one's Job created (its lease taken before the abort)
    first, second = _begun(sql, uid, ids[0]), _begun(sql, uid, ids[1])
    started = orchestration.start_helm_job(first, leases=factory.leases(), cluster=factory.cluster())
    assert started["phase"] == "pending" and started["jobName"] in cluster.jobs()

    # When the abort answers, and only then the second customer's StartHelmJob runs
    code, data = control("abort", uid, {"reason": "error rate up"})
    assert code == 202, data
    requests_before = len(cluster.job_create_requests)
    result = orchestration.start_helm_job(second, leases=factory.leases(), cluster=factory.cluster())

    # Then its lease transaction found the stop and skipped it: no Job was even asked for
    assert result["phase"] == "skipped", result
    assert result["reason"].startswith("not started: aborted by ") and "error rate up" in result["reason"]
    assert cluster.job_create_requests[requests_before:] == []
    assert list(cluster.jobs()) == [started["jobName"]]
    row = sql("SELECT status, error, job_name FROM customer_upgrade_logs WHERE id = %s", second["logId"])[0]
    assert (row["status"], row["error"], row["job_name"]) == ("skipped", result["reason"], None)
    # and the customer that had its lease before the abort keeps it (its Job runs on); nothing else is held
    assert sql("SELECT log_id FROM customer_leases") == [{"log_id": first["logId"]}]
