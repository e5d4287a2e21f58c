"""How many Step Functions history events does one upgrade write, and does the parent's grow with customers?

The design promises: with a Distributed Map (one child execution per customer) the parent execution's
history grows with the number of waves, not customers (Standard executions are capped at 25,000 events).
This runs real upgrades - the real ASL on moto's executing Step Functions, the real handlers, a
temporary database on the machine's PostgreSQL, the SimulatedCluster over HTTP - for 10 and 40
customers, with strategy all and canary (+ /continue), and prints the parent's event count and the
per-customer child event counts.

    .venv/bin/python -m benchmarks.history_events

Child executions and moto (5.2.x): `list_map_runs` works, but moto does not register a Distributed Map's
child executions as executions (`list_executions(mapRunArn=...)` is not supported: it needs a
stateMachineArn and ignores mapRunArn), and it writes the children's events into a throwaway EventManager
per map run. So child events are counted another way: `EventManager.add_event` is wrapped and each event
is attributed to the item (customer) whose evaluation started the thread that writes it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for entry in (ROOT / "layers" / "shared", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import logging  # noqa: E402
import os  # noqa: E402

# moto logs every caught JSONPath miss at ERROR level; keep the table readable.
logging.getLogger("moto").setLevel(logging.CRITICAL)

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "customer-upgrades")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (  # noqa: E402
    distributed_item_processor_worker as dist_worker,
)
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager  # noqa: E402
from upgrader import factory  # noqa: E402
from upgrader.models import DeployRequest  # noqa: E402

from tests.api.helpers import continue_, deploy, status  # noqa: E402
from tests.support.database import temporary_database  # noqa: E402
from upgradectl.local.cluster import SimulatedCluster  # noqa: E402
from upgradectl.local.runtime import LocalRuntime  # noqa: E402


# ------------------------------------------------------------------ child event attribution (moto)
class ChildEvents:
    """Counts the history events written for each item (customer) of a Distributed Map.

    moto evaluates an item on a map worker thread, and each state of it on further threads it starts
    from there; the item being evaluated is handed down to every thread started on its behalf.
    The per-map-run totals (moto's throwaway EventManager per map run) are kept as a cross-check.
    """

    def __init__(self) -> None:
        self.by_customer: Counter[str] = Counter()
        self.by_manager: Counter[int] = Counter()
        self._local = threading.local()
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[ChildEvents]:
        worker = dist_worker.DistributedItemProcessorWorker
        original_add, original_eval = EventManager.add_event, worker._eval_job
        original_start, original_run = threading.Thread.start, threading.Thread.run
        tracker = self

        def add_event(manager: Any, *args: Any, **kwargs: Any) -> Any:
            item = getattr(tracker._local, "item", None)
            if item is not None:
                with tracker._lock:
                    tracker.by_customer[item] += 1
                    tracker.by_manager[id(manager)] += 1
            return original_add(manager, *args, **kwargs)

        def eval_job(self: Any, env: Any, job: Any) -> Any:
            tracker._local.item = str((job.job_input or {}).get("customerId", "?"))
            try:
                return original_eval(self, env, job)
            finally:
                tracker._local.item = None

        def start(thread: threading.Thread) -> None:
            thread._bench_item = getattr(tracker._local, "item", None)  # type: ignore[attr-defined]
            original_start(thread)

        def run(thread: threading.Thread) -> None:
            tracker._local.item = getattr(thread, "_bench_item", None)
            original_run(thread)

        EventManager.add_event = add_event  # type: ignore[method-assign]
        worker._eval_job = eval_job  # type: ignore[method-assign]
        threading.Thread.start = start  # type: ignore[method-assign]
        threading.Thread.run = run  # type: ignore[method-assign]
        try:
            yield self
        finally:
            EventManager.add_event = original_add  # type: ignore[method-assign]
            worker._eval_job = original_eval  # type: ignore[method-assign]
            threading.Thread.start = original_start  # type: ignore[method-assign]
            threading.Thread.run = original_run  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------- one run
def history_event_count(sfn: Any, execution_arn: str) -> int:
    count, token = 0, None
    while True:
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = sfn.get_execution_history(**kwargs)
        count += len(page["events"])
        token = page.get("nextToken")
        if not token:
            return count


def child_listing(sfn: Any, execution_arn: str) -> tuple[int, str]:
    """(map runs, what listing their child executions gives) - documents moto's support."""
    runs = sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
    if not runs:
        return 0, "no map runs"
    try:
        listed = sfn.list_executions(mapRunArn=runs[0]["mapRunArn"])["executions"]
        return len(runs), f"list_executions(mapRunArn) -> {len(listed)}"
    except Exception as exc:  # noqa: BLE001 - reported, it is what we measure
        return len(runs), f"list_executions(mapRunArn) unsupported ({type(exc).__name__})"


def run_once(strategy: str, customers: int) -> dict[str, Any]:
    with temporary_database("upgrades_bench") as url, SimulatedCluster(job_duration_seconds=0.05) as cluster, \
            LocalRuntime(database_url=url, kube_api_url=cluster.url, kube_token_file=str(cluster.lambda_token_file),
                         poll_seconds=0) as runtime:  # fmt: skip
        repo = factory.repository()
        for i in range(1, customers + 1):
            name = f"customer-{i:04d}"
            repo.upsert_customer(f"cust_{i:04d}", name, name, versions={"api": "v1.1.0"})
            cluster.add_release(name, name, values={"api.image.tag": "v1.1.0"})
        request: dict[str, Any] = {"component": "api", "version": "v1.2.0", "strategy": strategy}
        if strategy == "canary":
            request["canaryPercent"] = 10
        if "healthCheck" in DeployRequest.model_fields:  # the simulated cluster runs no workloads
            request["healthCheck"] = {"enabled": False}
        with ChildEvents().installed() as children:
            began = time.monotonic()
            started = deploy(**request)
            if strategy == "canary":
                deadline = time.monotonic() + 120
                while status(started["upgradeId"])[1]["status"] != "awaiting_continue":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the canary gate never opened")
                    time.sleep(0.1)
                code, answer = continue_(started["upgradeId"])
                if code != 200:
                    raise RuntimeError(f"/continue answered {code}: {answer}")
            execution = runtime.wait(started["jobId"], timeout=300)
            seconds = time.monotonic() - began
        final = status(started["upgradeId"])[1]
        arn = runtime.execution_arn(started["jobId"])
        map_runs, listing = child_listing(runtime.sfn, arn)
        per_child = sorted(children.by_customer.values())
        return {
            "strategy": strategy if strategy == "all" else "canary+continue",
            "customers": customers,
            "execution": execution["status"],
            "upgrade": f"{final['status']} {final['completed']}/{final['total']}",
            "parent_events": history_event_count(runtime.sfn, arn),
            "children": len(per_child),
            "child_min": per_child[0] if per_child else 0,
            "child_median": statistics.median(per_child) if per_child else 0,
            "child_max": per_child[-1] if per_child else 0,
            "child_total": sum(per_child),
            "map_runs": map_runs,
            "listing": listing,
            "seconds": seconds,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 40])
    args = parser.parse_args(argv)
    results = [run_once(strategy, n) for strategy in ("all", "canary") for n in args.sizes]

    header = (f"{'strategy':<16}{'customers':>9}  {'execution':<10}{'upgrade':<15}{'parent':>7}{'children':>9}"
              f"{'child min/med/max':>19}{'child sum':>10}{'map runs':>9}{'secs':>7}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in results:
        spread = f"{r['child_min']}/{r['child_median']:g}/{r['child_max']}"
        print(f"{r['strategy']:<16}{r['customers']:>9}  {r['execution']:<10}{r['upgrade']:<15}{r['parent_events']:>7}"
              f"{r['children']:>9}{spread:>19}{r['child_total']:>10}{r['map_runs']:>9}{r['seconds']:>7.1f}")  # fmt: skip
    print()
    ok = True
    small, large = min(args.sizes), max(args.sizes)
    for strategy in ("all", "canary+continue"):
        by_size = {r["customers"]: r for r in results if r["strategy"] == strategy}
        ratio = by_size[large]["parent_events"] / by_size[small]["parent_events"]
        grows = ratio > 1.0
        ok = ok and not grows and all(r["execution"] == "SUCCEEDED" for r in by_size.values())
        print(
            f"{strategy}: parent({large})/parent({small}) = {by_size[large]['parent_events']}/"
            f"{by_size[small]['parent_events']} = {ratio:.2f}  ({'GROWS with customers' if grows else 'flat'})"
        )
    print(f"child executions: {results[0]['listing']}; counted per customer by attributing map-worker events")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
