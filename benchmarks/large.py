"""`make bench-large`: a 10,000-customer simulated rollout, every customer accounted for.

One all-at-once upgrade of `api` through the real product (see benchmarks/rollouts.py): 0.05 s Jobs,
poll 0, maxConcurrency 50. Afterwards every customer is checked three ways: its log row is final, the
inventory records the version its release holds, and the release in the cluster runs v1.2.0.

    .venv/bin/python -m benchmarks.large                  # 10,000 customers (about 15 minutes here)
    .venv/bin/python -m benchmarks.large --customers 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import psycopg

from benchmarks.rollouts import deploy_request
from benchmarks.stack import local_stack, seed_customers
from tests.api.helpers import deploy, status
from upgradectl.local.cluster import SimulatedCluster


def _api_tag(cluster: SimulatedCluster, name: str) -> str | None:
    """The api image tag the release's newest revision runs (Helm's own record)."""
    history = cluster.release_history(name, name)
    values = history[-1][2] if history else {}
    return ((values.get("api") or {}).get("image") or {}).get("tag")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    n = args.customers
    with local_stack(database="upgrades_bench_large") as stack:
        url, cluster, runtime = stack.url, stack.cluster, stack.runtime
        print(f"seeding {n:,} customers and releases ...", file=sys.stderr, flush=True)
        seed_customers(cluster, n)
        print(f"rollout of {n:,} customers starts", file=sys.stderr, flush=True)
        began = time.monotonic()
        started = deploy(**deploy_request("all", n, args.concurrency))
        execution = runtime.wait(started["jobId"], timeout=max(3600.0, n * 1.0))
        seconds = time.monotonic() - began
        final = status(started["upgradeId"])[1]
        with psycopg.connect(url) as conn:
            rows: Counter[str] = Counter(dict(conn.execute(
                "SELECT status, count(*) FROM customer_upgrade_logs WHERE upgrade_id = %s GROUP BY status",
                (int(started["upgradeId"]),)).fetchall()))  # fmt: skip
            inventory: Counter[str] = Counter(dict(conn.execute(
                "SELECT version, count(*) FROM customer_component_versions WHERE component = 'api' GROUP BY version"
            ).fetchall()))  # fmt: skip
        releases = Counter(_api_tag(cluster, f"customer-{i:05d}") for i in range(1, n + 1))
    final_rows = sum(count for state, count in rows.items() if state not in ("pending", "in_progress"))
    print(f"{n:,} customers, all-at-once, 0.05 s Jobs, concurrency {args.concurrency}: execution "
          f"{execution['status']} in {seconds:.0f} s ({n / seconds:.1f} customers/s)")  # fmt: skip
    print(f"upgrade {final['status']}: completed {final['completed']}, failed {final['failed']}, "
          f"total {final['total']}")  # fmt: skip
    print(f"log rows final: {final_rows:,} of {n:,} {dict(rows)}")
    print(f"inventory api versions: {dict(inventory)}")
    print(f"releases running api: {dict(releases)}")
    accounted = final_rows == n == final["total"] and final["completed"] + final["failed"] == n
    ok = accounted and inventory.get("v1.2.0") == n and releases.get("v1.2.0") == n
    print("every customer accounted for" if ok else "NOT every customer accounted for")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
