"""The rollback target when the inventory disagrees with the release (drift the scheduled sync has not
flagged yet): the version the release itself held before the upgrade, never the inventory's.

The upgrade row keeps both: `from_version` (what the inventory said when the deploy was planned) and
`version_before` (read from the release, under the lease, right before helm). Against the real
PostgreSQL; tests/e2e/test_rollback_drift.py runs the same through helm."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader import factory

from tests.api.helpers import control, deploy, rollback

STALE, RELEASED, UPGRADED = "v1.0.0", "v1.1.0", "v1.2.0"


@pytest.fixture
def drifted_upgrade(make_customers: Any, fake_workflow: Any, sql: Any) -> str:
    """Two customers the inventory believes on api v1.0.0 while their releases run v1.1.0, upgraded to
    v1.2.0 (each upgrade row recorded what its release held before and after helm), the upgrade ended."""
    ids = make_customers(2, versions={"api": STALE, "dashboard": "v1.9.0"})
    uid = deploy(component="api", version=UPGRADED)["upgradeId"]
    runs, leases = factory.runs(), factory.leases()
    for customer in ids:
        log_id = sql("SELECT id FROM customer_upgrade_logs WHERE customer_id = %s", customer)[0]["id"]
        runs.claim_customer(log_id)
        with leases.session(log_id) as lease:
            lease.record_plan(revision_before=1, version_before=RELEASED, chart_version="1.4.0")
            lease.record_job(f"helm-upgrade-{log_id}")
        runs.finish_customer(log_id, "completed", "ok", None,
                             {"revision": 2, "chartVersion": "1.4.0", "versions": {"api": UPGRADED}})  # fmt: skip
    sql("UPDATE system_upgrades SET status = 'completed' WHERE id = %s", int(uid))
    sql("UPDATE upgrade_runs SET status = 'completed' WHERE upgrade_id = %s", int(uid))
    rows = sql("SELECT from_version, version_before FROM customer_upgrade_logs WHERE upgrade_id = %s", int(uid))
    assert {(r["from_version"], r["version_before"]) for r in rows} == {(STALE, RELEASED)}  # the drift, recorded
    # (and the inventory's own "previous" is the stale one too: the other value a rollback must not take)
    previous = sql("SELECT previous_version FROM customer_component_versions WHERE component = 'api'")
    assert {r["previous_version"] for r in previous} == {STALE}
    return str(uid)


def test_a_customer_rollback_restores_what_its_release_held(drifted_upgrade: str, sql: Any) -> None:
    """Breakage tried: `upgraded["from_version"] or upgraded["version_before"]` in
    `rollbacks._insert_rollback_row`: the rollback targeted v1.0.0; this test failed."""
    code, data = rollback(drifted_upgrade, "cust_0001")
    assert code == 202, data
    assert data["toVersion"] == RELEASED
    row = sql("SELECT from_version, to_version FROM customer_upgrade_logs WHERE id = %s", data["rollbackId"])[0]
    assert (row["from_version"], row["to_version"]) == (UPGRADED, RELEASED)


def test_a_whole_upgrade_rollback_restores_what_each_release_held(drifted_upgrade: str, sql: Any) -> None:
    """Breakage tried: `u["from_version"] or u["version_before"]` for the targets in
    `rollbacks._insert_rollback_rows`: every row targeted v1.0.0; this test failed."""
    code, data = control("rollback", drifted_upgrade)
    assert code == 202 and data["customers"] == 2, data
    rows = sql("SELECT to_version FROM customer_upgrade_logs WHERE run_name = %s", data["jobId"])
    assert [r["to_version"] for r in rows] == [RELEASED, RELEASED]


def test_the_targets_checked_against_compatibility_rules_are_the_releases_own(drifted_upgrade: str) -> None:
    """What a rollback request is checked against (compatibility rules) is what it will restore.

    Breakage tried: `c["from_version"] or c["version_before"]` in `RollbackRepository.rollback_targets`:
    the targets said v1.0.0; this test failed."""
    targets = factory.rollbacks().rollback_targets(int(drifted_upgrade))
    assert sorted((t.customer_id, t.changes["api"]) for t in targets) == [
        ("cust_0001", RELEASED), ("cust_0002", RELEASED),
    ]  # fmt: skip
