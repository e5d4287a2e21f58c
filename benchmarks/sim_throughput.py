"""Local rollout throughput: does the harness (simulated cluster + Step Functions on moto) keep up as the fleet grows?

Drives the REAL product: the real ASL on moto's executing Step Functions, the real worker handlers,
a temporary database on the machine's PostgreSQL and the SimulatedCluster over HTTP (RBAC enforced,
the Lambda identity's token from a file), like tests/e2e. For each size, one all-at-once upgrade
of `api` with 0.05 s helm Jobs, poll 0 and maxConcurrency 50 (lowered to the API's cap when it has
one), default health check (rollout status). Prints customers/s per size and the ratio of the
largest to the smallest (1.0 = flat: the harness does not slow down with the fleet).

    .venv/bin/python -m benchmarks.sim_throughput                    # 100, 500, 1000 customers
    .venv/bin/python -m benchmarks.sim_throughput --sizes 100 --profile /tmp/sim.prof   # cProfile, every thread

Goal (issue 11): 20 customers/s or more, flat from 100 to 1,000.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from upgrader.contract.models import DeployRequest
from upgrader.infra.settings import get_settings

from benchmarks.stack import local_stack, seed_customers
from tests.api.helpers import deploy, status

JOB_SECONDS = 0.05
WANTED_CONCURRENCY = 50


def max_concurrency() -> int:
    """50, or the highest maxConcurrency a deploy accepts when that is lower."""
    field = DeployRequest.model_fields["maxConcurrency"]
    highest = WANTED_CONCURRENCY
    for annotation in field.metadata:
        for meta in getattr(annotation, "metadata", [annotation]):
            le = getattr(meta, "le", None)
            if isinstance(le, int):
                highest = min(highest, le)
    cap = get_settings().max_concurrency_cap
    return min(highest, cap) if cap else highest


@contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """cProfile of every thread (the worker threads moto starts, the simulated cluster's loop)."""
    if not path:
        yield
        return
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original_run(thread)
        finally:
            profile.disable()

    main = cProfile.Profile(time.thread_time)
    threading.Thread.run = run  # type: ignore[method-assign,assignment]
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
        stats = pstats.Stats(main)
        with lock:
            for profile in profiles:
                try:
                    stats.add(profile)
                except TypeError:  # a thread still running: its profile is incomplete
                    continue
        stats.dump_stats(path)


def run_once(customers: int, concurrency: int, profile: str | None) -> dict[str, Any]:
    with local_stack(job_seconds=JOB_SECONDS) as stack:
        cluster, runtime = stack.cluster, stack.runtime
        seed_customers(cluster, customers)
        print(f"rollout of {customers} customers starts (pid {os.getpid()})", file=sys.stderr, flush=True)
        with profiled(profile):
            began, cpu_began = time.monotonic(), time.process_time()
            started = deploy(component="api", version="v1.2.0", strategy="all", maxConcurrency=concurrency)
            execution = runtime.wait(started["jobId"], timeout=max(600.0, customers * 2.0))
            seconds, cpu = time.monotonic() - began, time.process_time() - cpu_began
        final = status(started["upgradeId"])[1]
        return {
            "customers": customers,
            "execution": execution["status"],
            "upgrade": f"{final['status']} {final['completed']}/{final['total']}",
            "seconds": seconds,
            "rate": customers / seconds,
            "cpu": cpu / seconds,
            "peak": cluster.peak_running_jobs(started["upgradeId"]),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--profile", help="write a cProfile of the (last) run, every thread, to this file")
    args = parser.parse_args(argv)
    concurrency = max_concurrency()
    print(f"all-at-once upgrade, {JOB_SECONDS:g} s helm Jobs, poll 0, maxConcurrency {concurrency}", flush=True)
    header = (f"{'customers':>9}  {'execution':<10}{'upgrade':<18}{'seconds':>8}{'customers/s':>13}{'peak Jobs':>10}"
              f"{'CPU':>6}")  # fmt: skip
    print(header)
    print("-" * len(header), flush=True)
    results = []
    for index, size in enumerate(args.sizes):
        result = run_once(size, concurrency, args.profile if index == len(args.sizes) - 1 else None)
        results.append(result)
        peak = str(result["peak"])
        print(f"{result['customers']:>9}  {result['execution']:<10}{result['upgrade']:<18}{result['seconds']:>8.1f}"
              f"{result['rate']:>13.1f}{peak:>10}{result['cpu']:>6.0%}", flush=True)  # fmt: skip
    ok = all(r["execution"] == "SUCCEEDED" for r in results)
    if len(results) > 1:
        small = min(results, key=lambda r: r["customers"])
        large = max(results, key=lambda r: r["customers"])
        ratio = large["rate"] / small["rate"]
        print(f"\nrate({large['customers']}) / rate({small['customers']}) = {ratio:.2f}  (1.0 = flat)")
    if args.profile:
        print(f"profile of the {args.sizes[-1]}-customer run: {args.profile}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
