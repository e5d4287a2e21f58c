"""What must hold after any run, whatever faults were injected."""

from __future__ import annotations

from collections import Counter
from typing import Any

from upgradectl.local.cluster import SimulatedCluster

FINAL = {"completed", "failed", "skipped", "rolled_back"}


def assert_invariants(
    sql: Any, cluster: SimulatedCluster, upgrade_id: str | int, *, max_concurrency: int | None = None
) -> dict[str, int]:
    """Every customer in exactly one final state, one Job per (customer, operation, attempt) counted
    at the API server, counters equal to the counts of the log rows, nothing lost, and never more helm
    Jobs of the upgrade running at once than its maxConcurrency. Returns the status counts."""
    uid = int(upgrade_id)
    rows = sql("SELECT customer_id, status, operation FROM customer_upgrade_logs WHERE upgrade_id = %s", uid)
    upgrade_rows = [r for r in rows if r["operation"] == "upgrade"]
    # exactly one upgrade row per customer, and every row final
    assert len({r["customer_id"] for r in upgrade_rows}) == len(upgrade_rows)
    assert {r["status"] for r in rows} <= FINAL, Counter(r["status"] for r in rows)
    upgrade = sql("SELECT * FROM system_upgrades WHERE id = %s", uid)[0]
    counts = Counter(r["status"] for r in upgrade_rows)
    assert upgrade["total_customers"] == len(upgrade_rows)
    assert upgrade["completed_customers"] == counts["completed"], (upgrade, counts)
    assert upgrade["failed_customers"] == counts["failed"] + counts["rolled_back"], (upgrade, counts)
    # no customer got two Jobs for one attempt: every Job the API server created (201), counted per
    # request as it arrived (not per stored name, where duplicates would collapse), has its own identity
    identities = Counter(
        (
            labels.get("upgrades.example.com/upgrade-id"),
            labels.get("upgrades.example.com/customer-id"),
            labels.get("upgrades.example.com/operation"),
            labels.get("upgrades.example.com/attempt"),
        )
        for job in cluster.created_jobs
        if job.status == 201
        for labels in [job.manifest["metadata"]["labels"]]
        if labels.get("upgrades.example.com/upgrade-id") == str(uid)
    )
    assert all(n == 1 for n in identities.values()), identities
    # never more helm Jobs at once than the upgrade allows (its stored maxConcurrency, unless given)
    limit = max_concurrency or int((upgrade["parameters"] or {}).get("maxConcurrency") or 0)
    if identities and limit:
        peak = cluster.peak_running_jobs(uid)
        assert 0 < peak <= limit, f"{peak} helm Jobs of upgrade {uid} ran at once (maxConcurrency {limit})"
    return dict(counts)
