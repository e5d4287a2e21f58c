"""The rollback of one failed wave (an analysis fail with autoRollback, docs/analysis.md): only that wave's
customers, its run of scope "wave" naming the wave in the upgrade's own execution, recorded once however often a
retried FinalizeRun asks for it; the exact per-customer checks of `rollout/rollbacks.py` still apply."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader import factory

from tests.api.helpers import deploy


@pytest.fixture
def two_waves_changed(make_customers: Any, fake_workflow: Any, sql: Any) -> tuple[int, str]:
    """A batch of 2 over 6 customers: waves 0 and 1 upgraded (api v1.1.0 → v1.2.0), wave 2 not started; halted."""
    make_customers(6)
    uid = int(deploy(strategy="batch", batchSize=2)["upgradeId"])
    sql(
        """UPDATE customer_upgrade_logs SET status = 'completed', version_before = 'v1.1.0', version_after = 'v1.2.0',
                  revision_before = 1, revision_after = 2, job_name = 'helm-upgrade-' || id, completed_at = NOW()
            WHERE upgrade_id = %s AND operation = 'upgrade' AND wave IN (0, 1)""",
        uid,
    )  # fmt: skip
    sql("UPDATE system_upgrades SET status = 'halted' WHERE id = %s", uid)
    sql("UPDATE upgrade_runs SET status = 'halted' WHERE upgrade_id = %s", uid)
    [run] = sql("SELECT run_name FROM upgrade_runs WHERE upgrade_id = %s", uid)
    return uid, str(run["run_name"])


def _wave(sql: Any, uid: int, wave: int) -> list[str]:
    rows = sql("SELECT customer_id FROM customer_upgrade_logs WHERE upgrade_id = %s AND wave = %s AND operation = "
               "'upgrade' ORDER BY customer_id", uid, wave)  # fmt: skip
    return [r["customer_id"] for r in rows]


def test_a_wave_rollback_takes_back_only_that_waves_customers(two_waves_changed: tuple[int, str], sql: Any) -> None:
    uid, execution = two_waves_changed
    rows = factory.runs().create_abort_rollback(uid, requested_by="analysis", run_name=f"{execution}-rollback", wave=1)
    assert sorted(r.customer_id for r in rows) == _wave(sql, uid, 1)
    assert {(r.from_version, r.to_version) for r in rows} == {("v1.2.0", "v1.1.0")}
    run = sql("SELECT execution_name, scope, wave FROM upgrade_runs WHERE run_name = %s", f"{execution}-rollback")
    assert run == [{"execution_name": execution, "scope": "wave", "wave": 1}]


def test_a_retried_wave_rollback_is_recorded_once(two_waves_changed: tuple[int, str], sql: Any) -> None:
    uid, execution = two_waves_changed
    runs = factory.runs()
    first = runs.create_abort_rollback(uid, requested_by="analysis", run_name=f"{execution}-rollback", wave=1)
    again = runs.create_abort_rollback(uid, requested_by="analysis", run_name=f"{execution}-rollback", wave=1)
    assert (len(first), again) == (2, [])
    counted = sql("SELECT count(*) AS n FROM customer_upgrade_logs WHERE upgrade_id = %s AND operation = 'rollback'",
                  uid)  # fmt: skip
    assert counted[0]["n"] == 2
    assert runs.run_size(f"{execution}-rollback") == 2


def test_a_wave_without_changes_records_no_run(two_waves_changed: tuple[int, str], sql: Any) -> None:
    uid, execution = two_waves_changed
    assert factory.runs().create_abort_rollback(uid, requested_by="analysis", run_name=f"{execution}-rollback",
                                                wave=2) == []  # fmt: skip
    assert sql("SELECT count(*) AS n FROM upgrade_runs WHERE kind = 'rollback'")[0]["n"] == 0


def test_a_wave_scope_must_name_its_wave(two_waves_changed: tuple[int, str]) -> None:
    uid, _ = two_waves_changed
    with pytest.raises(ValueError, match="names its wave"):
        factory.rollbacks().create_upgrade_rollback(uid, requested_by=None, run_name="r", scope="wave")
    with pytest.raises(ValueError, match="names its wave"):
        factory.rollbacks().create_upgrade_rollback(uid, requested_by=None, run_name="r", wave=1)
