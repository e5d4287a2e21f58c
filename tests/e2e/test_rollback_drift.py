"""A rollback when the inventory disagrees with the release (drift not synced yet), through the real state
machine, PostgreSQL and the simulated cluster's helm: the customer gets back what its release held before
the upgrade, never the version the inventory believed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import deploy, rollback
from tests.e2e.test_exact_changes import inventory, runs_on

pytestmark = pytest.mark.e2e

STALE, RELEASED, UPGRADED = "v1.0.0", "v1.1.0", "v1.2.0"
OPERATION = "upgrades.example.com/operation"


def _rolled_back(stack: Any, upgrade_id: str, customer_id: str) -> dict[str, Any]:
    code, data = rollback(upgrade_id, customer_id)
    assert code == 202, data
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"
    return dict(data)


def test_the_rollback_restores_the_releases_own_previous_version_not_the_inventorys(stack, make_customers, sql):
    """Breakage tried: the rollback row's target taken from the inventory's view first
    (`upgraded["from_version"] or upgraded["version_before"]` in `rollbacks._insert_rollback_row`): the
    answer said v1.0.0 and the restore Job set api back to v1.0.0, a version this customer never ran;
    this test failed."""
    # Given two customers the inventory believes on api v1.0.0, whose releases run v1.1.0
    ids = make_customers(2, versions={"api": STALE, "dashboard": "v1.9.0"})
    for customer in ids:
        name = f"customer-{customer.removeprefix('cust_')}"
        stack.cluster.add_release(name, name, values={"api.image.tag": RELEASED, "dashboard.image.tag": "v1.9.0"})
    upgrade = deploy(component="api", version=UPGRADED, strategy="all")
    assert stack.wait_execution(upgrade["jobId"])["status"] == "SUCCEEDED"
    uid = upgrade["upgradeId"]
    # and the second customer's dashboard upgraded since (its release moved on: a restore, not helm rollback)
    other = deploy(component="dashboard", version="v2.0.0", strategy="all", customerIds=[ids[1]])
    assert stack.wait_execution(other["jobId"])["status"] == "SUCCEEDED"

    # When each customer's api is rolled back
    exact, restored = _rolled_back(stack, uid, ids[0]), _rolled_back(stack, uid, ids[1])

    # Then both target, and get back, what their release held: v1.1.0
    assert exact["toVersion"] == restored["toVersion"] == RELEASED
    assert runs_on(stack.cluster, ids[0])["api"] == RELEASED
    second = runs_on(stack.cluster, ids[1])
    assert (second["api"], second["dashboard"]) == (RELEASED, "v2.0.0")  # the later dashboard change is kept
    kinds = [job.manifest["metadata"]["labels"][OPERATION] for job in stack.cluster.created_jobs]
    assert kinds[-2:] == ["rollback", "restore"]
    container = stack.cluster.created_jobs[-1].manifest["spec"]["template"]["spec"]["containers"][0]
    argv = [*container.get("command", []), *container["args"]]
    assert argv[argv.index("--set-string") + 1] == f"api.image.tag={RELEASED}", argv
    logged = {e["customer_id"]: e for e in stack.logs(uid, operation="rollback")["logs"]}
    assert {c: (e["status"], e["to_version"], e["version_after"]) for c, e in logged.items()} == {
        ids[0]: ("completed", RELEASED, RELEASED), ids[1]: ("completed", RELEASED, RELEASED),
    }  # fmt: skip
    # and the inventory now follows the releases
    assert inventory(sql, ids[0])["api"] == inventory(sql, ids[1])["api"] == RELEASED
