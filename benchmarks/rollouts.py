"""One real rollout, counted: the real ASL on moto's executing Step Functions, the real handlers, a
temporary database on the machine's PostgreSQL and the SimulatedCluster over HTTP (RBAC enforced, the
Lambda identity's token from a file), like tests/e2e (`benchmarks.stack`). Shared by `benchmarks.suite`
and `benchmarks.large`."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from benchmarks.counting import (
    HistoryEvents,
    LambdaCounter,
    SqlCounter,
    SqlCounts,
    parent_history,
    transitions,
)
from benchmarks.stack import local_stack, seed_customers
from tests.api.helpers import continue_, control, deploy, status

CANARY_PERCENT = 10
BATCH_WAVES = 4  # batch: the batch size is a quarter of the fleet, so 10 and 1,000 customers both run 4 waves


@dataclass
class Rollout:
    """What one counted upgrade (and, when asked, its whole-upgrade rollback) did."""

    strategy: str
    customers: int
    execution: str
    upgrade: dict[str, Any]
    seconds: float
    gate_seconds: float
    waves: list[int]
    parent_events: Counter[str]
    child_events: Counter[str]  # per child (logId)
    child_types: Counter[str]
    lambdas: LambdaCounter
    sql: SqlCounts | None = None
    rollback_sql: SqlCounts | None = None
    rollback: dict[str, Any] = field(default_factory=dict)

    @property
    def transitions(self) -> int:
        return transitions(self.parent_events) + transitions(self.child_types)

    @property
    def invocations(self) -> int:
        return sum(self.lambdas.invocations.values())

    def ideal_seconds(self, concurrency: int, job_seconds: float) -> float:
        """ceil(wave / maxConcurrency) x Job duration, summed over the waves (no gate)."""
        return sum(math.ceil(size / concurrency) for size in self.waves) * job_seconds


def deploy_request(strategy: str, customers: int, concurrency: int) -> dict[str, Any]:
    request: dict[str, Any] = {"component": "api", "version": "v1.2.0", "strategy": strategy,
                               "maxConcurrency": concurrency}  # fmt: skip
    if strategy == "canary":
        request["canaryPercent"] = CANARY_PERCENT
    if strategy == "batch":
        request["batchSize"] = math.ceil(customers / BATCH_WAVES)
    return request


def _through_gate(upgrade_id: str, timeout: float) -> float:
    """Wait for the canary gate, then /continue at once; the seconds the gate was open before that."""
    deadline = time.monotonic() + timeout
    while status(upgrade_id)[1]["status"] != "awaiting_continue":
        if time.monotonic() > deadline:
            raise RuntimeError("the canary gate never opened")
        time.sleep(0.05)
    opened = time.monotonic()
    code, answer = continue_(upgrade_id)
    if code != 200:
        raise RuntimeError(f"/continue answered {code}: {answer}")
    return time.monotonic() - opened


def rollout(
    strategy: str,
    customers: int,
    *,
    job_seconds: float = 0.05,
    poll_seconds: int = 0,
    concurrency: int = 50,
    learn: bool = True,
    count_sql: bool = False,
    then_rollback: bool = False,
    timeout: float | None = None,
    progress: str = "",
) -> Rollout:
    """One upgrade of `api` on `customers` customers; counted (and, with `then_rollback`, rolled back)."""
    timeout = timeout if timeout is not None else max(600.0, customers * 3.0 * max(job_seconds, 0.2))
    env = {"LEARN_HELM_DURATION": "true" if learn else "false"}
    if progress:
        print(f"  {progress}: {strategy}, {customers} customers ...", file=sys.stderr, flush=True)
    with local_stack(job_seconds=job_seconds, poll_seconds=poll_seconds, extra_env=env) as stack:
        url, runtime = stack.url, stack.runtime
        seed_customers(stack.cluster, customers)
        sql = SqlCounter()
        with HistoryEvents().installed() as history, LambdaCounter().installed() as lambdas, sql.installed():
            before = sql.snapshot()
            began = time.monotonic()
            started = deploy(**deploy_request(strategy, customers, concurrency))
            gate = _through_gate(started["upgradeId"], timeout) if strategy == "canary" else 0.0
            execution = runtime.wait(started["jobId"], timeout=timeout)
            seconds = time.monotonic() - began
            upgrade_sql = sql.snapshot() - before
            parent = parent_history(runtime.sfn, runtime.execution_arn(started["jobId"]))
            result = Rollout(
                strategy=strategy, customers=customers, execution=execution["status"],
                upgrade=status(started["upgradeId"])[1], seconds=seconds, gate_seconds=gate,
                waves=_wave_sizes(url, int(started["upgradeId"])), parent_events=parent,
                child_events=Counter(history.by_customer), child_types=Counter(history.child_types), lambdas=lambdas,
                sql=upgrade_sql if count_sql else None,
            )  # fmt: skip
            if then_rollback:
                before = sql.snapshot()
                code, answer = control("rollback", started["upgradeId"])
                if code != 202:
                    raise RuntimeError(f"whole-upgrade rollback answered {code}: {answer}")
                rolled = runtime.wait(answer["jobId"], timeout=timeout)
                result.rollback_sql = sql.snapshot() - before
                result.rollback = {"execution": rolled["status"], "customers": answer["customers"]}
        return result


def _wave_sizes(url: str, upgrade_id: int) -> list[int]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT wave, count(*) FROM customer_upgrade_logs WHERE upgrade_id = %s AND operation = 'upgrade'"
            " AND run_name IS NOT NULL GROUP BY wave ORDER BY wave",
            (upgrade_id,),
        ).fetchall()
    return [int(count) for _, count in rows]
