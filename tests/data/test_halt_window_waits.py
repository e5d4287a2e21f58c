"""A failure-budget halt ends the run's wait for its customers' maintenance windows at once, wherever the
halt is recorded while the run waits: by FinishCustomer (a failure over the wave's budget) and by the
reconciler (an orphan's failure settled while the run waits). Real PostgreSQL, the real handlers; Step
Functions is the recording fake (the end-to-end tests run the real state machine)."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader import factory
from upgrader.cluster.types import JobState
from upgrader.infra.errors import GateClosed

from tests.api.helpers import deploy
from tests.data.test_reconciliation import FakeCluster, job_running
from tests.support.functions import invoke


def _rows(sql: Any, upgrade_id: str) -> dict[str, dict[str, Any]]:
    rows = sql("SELECT * FROM customer_upgrade_logs WHERE upgrade_id = %s", int(upgrade_id))
    return {r["customer_id"]: r for r in rows}


def _run_waits(upgrade_id: str, run_name: str, token: str = "window-run") -> None:
    """The run reaches WaitForWindows: AwaitContinue stores its task token on the run."""
    answer = invoke("await_continue", {"upgradeId": int(upgrade_id), "runName": run_name, "wave": 0,
                                       "taskToken": token, "gate": "window"})  # fmt: skip
    assert answer == {"waiting": True, "gate": "window"}


def _token(sql: Any, run_name: str) -> str | None:
    return sql("SELECT window_token FROM upgrade_runs WHERE run_name = %s", run_name)[0]["window_token"]


def _failed(row: dict[str, Any], upgrade_id: str) -> dict[str, Any]:
    """RecordResult's input for a customer whose helm Job failed."""
    return {"upgradeId": int(upgrade_id), "logId": row["id"], "customer": {"autoRollback": False},
            "job": {"phase": "failed", "stage": "upgrade", "error": "helm: manifest rejected"}}  # fmt: skip


def test_finish_customer_over_budget_ends_the_runs_window_wait_once(make_customers, fake_workflow, sql):
    """Breakage tried: `_halt` ignoring its `windows` argument (no token taken): caught by the `failed_tokens`
    assertion after the second failure; `finish_customer` handing the tokens over without the halt's reason:
    caught by the same assertion (the cause)."""
    make_customers(4)
    started = deploy(failureThreshold={"count": 1})
    uid, name = started["upgradeId"], started["jobId"]
    factory.runs().start_run(int(uid), name, "upgrade")
    rows = _rows(sql, uid)
    _run_waits(uid, name)

    # a failure within the budget halts nothing and ends no wait
    assert invoke("finish_customer", _failed(rows["cust_0001"], uid))["recorded"] is True
    assert fake_workflow.failed_tokens == []
    assert _token(sql, name) == "window-run"

    # the second is over it: the upgrade halts, and the run's WaitForWindows fails with UpgradeHalted
    assert invoke("finish_customer", _failed(rows["cust_0002"], uid))["recorded"] is True
    reason = "wave 1 of 1: 2 of 4 customers failed (tolerated: 1)"
    assert fake_workflow.failed_tokens == [("window-run", "UpgradeHalted", reason)]
    assert _token(sql, name) is None
    assert sql("SELECT halt_reason, failed_customers FROM system_upgrades WHERE id = %s", int(uid)) == [
        {"halt_reason": reason, "failed_customers": 2}
    ]

    # a retry of the step records nothing, so it halts and ends nothing a second time
    assert invoke("finish_customer", _failed(rows["cust_0002"], uid))["recorded"] is False
    assert len(fake_workflow.failed_tokens) == 1
    # a wait that begins only now stores nothing: it ends at once
    with pytest.raises(GateClosed):
        _run_waits(uid, name, "late")
    assert _token(sql, name) is None


def test_a_token_that_cannot_be_sent_does_not_undo_the_halt(make_customers, fake_workflow, sql, monkeypatch):
    """The wait then ends at its timeout (PrepareWave finds the halt); the halt itself stands."""
    make_customers(2)
    started = deploy()
    uid, name = started["upgradeId"], started["jobId"]
    factory.runs().start_run(int(uid), name, "upgrade")
    _run_waits(uid, name)

    def refused(token: str, error: str, cause: str) -> None:
        raise RuntimeError("Step Functions said no")

    monkeypatch.setattr(fake_workflow, "send_failure", refused)
    assert invoke("finish_customer", _failed(_rows(sql, uid)["cust_0001"], uid))["recorded"] is True
    assert sql("SELECT halt_reason FROM system_upgrades WHERE id = %s", int(uid)) == [
        {"halt_reason": "wave 1 of 1: 1 of 2 customers failed (tolerated: 0)"}
    ]
    assert sql("SELECT stop_reason IS NOT NULL AS stopped FROM upgrade_runs WHERE run_name = %s", name) == [
        {"stopped": True}
    ]


def test_an_orphan_settled_over_budget_by_the_reconciler_ends_the_runs_window_wait(make_customers, fake_workflow,
                                                                                   sql, monkeypatch):  # fmt: skip
    """Breakage tried: the reconciler settling without `release_windows` (the halt's tokens dropped): caught
    by the `failed_tokens` assertion."""
    make_customers(4)
    started = deploy(strategy="batch", batchSize=2)
    uid, name = started["upgradeId"], started["jobId"]
    runs = factory.runs()
    runs.start_run(int(uid), name, "upgrade")
    rows = _rows(sql, uid)
    job = job_running(sql, uid, "cust_0001")
    runs.finish_customer(rows["cust_0002"]["id"], "completed", "ok", None)
    # the slice ends with cust_0001's worker gone while its Job runs: left to the reconciler; the run waits
    runs.close_unfinished(name, 0, "the worker did not record a result for this customer", wave_over=False)
    _run_waits(uid, name)

    cluster = FakeCluster()
    cluster.jobs[job] = JobState(job, "failed", error="helm: manifest rejected")
    monkeypatch.setattr(factory, "cluster", lambda: cluster)
    swept = invoke("reconcile_runs", {"source": "scheduler.sweep", "minAgeSeconds": 0})  # the real handler
    assert swept["settled"] == [rows["cust_0001"]["id"]]
    reason = "wave 1 of 2: 1 of 2 customers failed (tolerated: 0)"
    assert fake_workflow.failed_tokens == [("window-run", "UpgradeHalted", reason)]
    assert _token(sql, name) is None
    assert sql("SELECT halt_reason FROM system_upgrades WHERE id = %s", int(uid)) == [{"halt_reason": reason}]
