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
import time
from typing import Any

from upgrader.contract.models import DeployRequest

from benchmarks.counting import HistoryEvents
from benchmarks.stack import local_stack, seed_customers
from tests.api.helpers import continue_, deploy, status


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


def run_once(strategy: str, customers: int, timeout: float) -> dict[str, Any]:
    with local_stack() as stack:
        runtime = stack.runtime
        seed_customers(stack.cluster, customers)
        request: dict[str, Any] = {"component": "api", "version": "v1.2.0", "strategy": strategy}
        if strategy == "canary":
            request["canaryPercent"] = 10
        if "healthCheck" in DeployRequest.model_fields:  # the simulated cluster runs no workloads
            request["healthCheck"] = {"enabled": False}
        with HistoryEvents().installed() as children:
            began = time.monotonic()
            started = deploy(**request)
            if strategy == "canary":
                deadline = time.monotonic() + timeout
                while status(started["upgradeId"])[1]["status"] != "awaiting_continue":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the canary gate never opened")
                    time.sleep(0.1)
                code, answer = continue_(started["upgradeId"])
                if code != 200:
                    raise RuntimeError(f"/continue answered {code}: {answer}")
            execution = runtime.wait(started["jobId"], timeout=timeout)
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
    parser.add_argument("--timeout", type=float, help="seconds per run (default: 600, or 1 s per customer)")
    args = parser.parse_args(argv)
    results = [run_once(strategy, n, args.timeout or max(600.0, float(n)))
               for strategy in ("all", "canary") for n in args.sizes]  # fmt: skip

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
