"""A failure-budget halt wakes the customers asleep until their maintenance window, wherever the halt is
recorded while they sleep: by FinishCustomer (a failure over the wave's budget) and by the reconciler
(an orphan's failure settled while the run goes on with a later wave). Real PostgreSQL, the real
handlers; Step Functions is the recording fake (the end-to-end test runs the real state machine)."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader import factory
from upgrader.cluster.types import JobState
from upgrader.errors import GateClosed

from tests.api.helpers import deploy
from tests.data.test_reconciliation import FakeCluster, job_running
from tests.support.functions import invoke


def _rows(sql: Any, upgrade_id: str) -> dict[str, dict[str, Any]]:
    rows = sql("SELECT * FROM customer_upgrade_logs WHERE upgrade_id = %s", int(upgrade_id))
    return {r["customer_id"]: r for r in rows}


def _asleep(upgrade_id: str, rows: dict[str, dict[str, Any]], customers: list[str]) -> None:
    """Each customer's child reaches WaitForWindow: AwaitContinue stores its task token."""
    for customer in customers:
        answer = invoke("await_continue", {"upgradeId": int(upgrade_id), "logId": rows[customer]["id"],
                                           "taskToken": f"window-{customer}", "gate": "window"})  # fmt: skip
        assert answer == {"waiting": True, "gate": "window"}


def _failed(row: dict[str, Any], upgrade_id: str) -> dict[str, Any]:
    """RecordResult's input for a customer whose helm Job failed."""
    return {"upgradeId": int(upgrade_id), "logId": row["id"], "customer": {"autoRollback": False},
            "job": {"phase": "failed", "stage": "upgrade", "error": "helm: manifest rejected"}}  # fmt: skip


def test_finish_customer_over_budget_wakes_every_sleeper_once(make_customers, fake_workflow, sql, monkeypatch):
    make_customers(4)
    started = deploy(failureThreshold={"count": 1})
    uid, name = started["upgradeId"], started["jobId"]
    factory.runs().start_run(int(uid), name, "upgrade")
    rows = _rows(sql, uid)
    _asleep(uid, rows, ["cust_0003", "cust_0004"])

    # a failure within the budget halts nothing and wakes nobody
    assert invoke("finish_customer", _failed(rows["cust_0001"], uid))["recorded"] is True
    assert fake_workflow.failed_tokens == []
    assert len(sql("SELECT id FROM customer_upgrade_logs WHERE window_token IS NOT NULL")) == 2

    # the second is over it: the upgrade halts, and each sleeper's WaitForWindow fails with UpgradeHalted,
    # also when another token cannot be sent (that one ends at its opening, as with an abort)
    send = fake_workflow.send_failure

    def flaky(token: str, error: str, cause: str) -> None:
        if token == "window-cust_0003":
            raise RuntimeError("Step Functions said no")
        send(token, error, cause)

    monkeypatch.setattr(fake_workflow, "send_failure", flaky)
    assert invoke("finish_customer", _failed(rows["cust_0002"], uid))["recorded"] is True
    reason = "wave 1 of 1: 2 of 4 customers failed (tolerated: 1)"
    assert fake_workflow.failed_tokens == [("window-cust_0004", "UpgradeHalted", reason)]
    assert sql("SELECT id FROM customer_upgrade_logs WHERE window_token IS NOT NULL") == []
    assert sql("SELECT halt_reason, failed_customers FROM system_upgrades WHERE id = %s", int(uid)) == [
        {"halt_reason": reason, "failed_customers": 2}
    ]

    # a retry of the step records nothing, so it halts and wakes nothing a second time
    monkeypatch.setattr(fake_workflow, "send_failure", send)
    assert invoke("finish_customer", _failed(rows["cust_0002"], uid))["recorded"] is False
    assert len(fake_workflow.failed_tokens) == 1
    assert sql("SELECT failed_customers FROM system_upgrades WHERE id = %s", int(uid)) == [{"failed_customers": 2}]

    # each woken child goes back to BeginCustomer: skipped with the halt's reason, never started
    for customer in ("cust_0003", "cust_0004"):
        begun = invoke("begin_customer", {"upgradeId": int(uid), "logId": rows[customer]["id"], "respectWindows": True})
        assert (begun["action"], begun["status"]) == ("done", "skipped")
    after = _rows(sql, uid)
    assert [after[c]["error"] for c in ("cust_0003", "cust_0004")] == [f"not started: {reason}"] * 2
    # a child that reaches WaitForWindow only now stores nothing: its wait ends at once
    with pytest.raises(GateClosed):
        _asleep(uid, rows, ["cust_0003"])


def test_an_orphan_settled_over_budget_by_the_reconciler_wakes_a_later_waves_sleepers(make_customers, fake_workflow,
                                                                                      sql, monkeypatch):  # fmt: skip
    make_customers(4)
    started = deploy(strategy="batch", batchSize=2)
    uid, name = started["upgradeId"], started["jobId"]
    runs = factory.runs()
    runs.start_run(int(uid), name, "upgrade")
    rows = _rows(sql, uid)
    job = job_running(sql, uid, "cust_0001")
    runs.finish_customer(rows["cust_0002"]["id"], "completed", "ok", None)
    # wave 1 ends with cust_0001's worker gone while its Job runs: left to the reconciler, the run goes on
    runs.close_unfinished(name, 0, "the worker did not record a result for this customer")
    _asleep(uid, rows, ["cust_0003", "cust_0004"])  # wave 2 sleeps until its windows

    cluster = FakeCluster()
    cluster.jobs[job] = JobState(job, "failed", error="helm: manifest rejected")
    monkeypatch.setattr(factory, "cluster", lambda: cluster)
    swept = invoke("reconcile_runs", {"source": "scheduler.sweep", "minAgeSeconds": 0})  # the real handler
    assert swept["settled"] == [rows["cust_0001"]["id"]]
    reason = "wave 1 of 2: 1 of 2 customers failed (tolerated: 0)"
    assert sorted(fake_workflow.failed_tokens) == [("window-cust_0003", "UpgradeHalted", reason),
                                                   ("window-cust_0004", "UpgradeHalted", reason)]  # fmt: skip
    assert sql("SELECT id FROM customer_upgrade_logs WHERE window_token IS NOT NULL") == []
    assert sql("SELECT halt_reason FROM system_upgrades WHERE id = %s", int(uid)) == [{"halt_reason": reason}]
