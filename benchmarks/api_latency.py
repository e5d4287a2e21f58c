"""API latency against a 10,000-customer inventory, with the query plans of every statement checked.

The real API handlers against a temporary database on the machine's PostgreSQL holding N active
customers (api, dashboard and exporter recorded for each). The workflow is real moto Step Functions,
but the state machine the API starts is a parked one (a single long Wait): what is measured is the
API's own work (planning, writing N rows, reading them back), not a rollout running beside it.

Every statement the API sends is captured (benchmarks.counting) and EXPLAINed with its own
parameters; a sequential scan of a fleet-sized table (customers, customer_upgrade_logs,
customer_component_versions) is reported.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from upgrader import factory

from benchmarks.counting import SqlCounter
from tests.api.helpers import call, control, deploy, logs, status
from tests.support.database import temporary_database
from upgradectl.local.engine import LocalStepFunctions
from upgradectl.local.functions import WORKER_FUNCTIONS, load_function

FLEET_TABLES = ("customers", "customer_upgrade_logs", "customer_component_versions")
PARKED = json.dumps({"StartAt": "Parked", "States": {"Parked": {"Type": "Wait", "Seconds": 86400, "End": True}}})


@dataclass
class Call:
    name: str
    seconds: float  # median
    statements: int
    round_trips: int
    seq_scans: list[str] = field(default_factory=list)  # "table (statement start)"


def seed_fleet(url: str, customers: int) -> None:
    """N active customers with api/dashboard/exporter at v1.1.0 (one statement per table)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (id, namespace, release_name, status)"
            " SELECT format('cust_%%s', lpad(i::text, 5, '0')), format('customer-%%s', lpad(i::text, 5, '0')),"
            "        format('customer-%%s', lpad(i::text, 5, '0')), 'active' FROM generate_series(1, %s) i",
            (customers,),
        )
        conn.execute(
            "INSERT INTO customer_component_versions (customer_id, component, version)"
            " SELECT c.id, k.component, 'v1.1.0' FROM customers c"
            " CROSS JOIN (VALUES ('api'), ('dashboard'), ('exporter')) AS k(component)"
        )
        conn.execute("ANALYZE")


def _finish_upgrade(url: str, upgrade_id: int) -> None:
    """Mark an upgrade done as a rollout would leave it: every customer completed, v1.1.0 -> v1.2.0."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE customer_upgrade_logs SET status = 'completed', started_at = NOW(), completed_at = NOW(),"
            " job_name = 'helm-' || id, revision_before = 1, revision_after = 2, version_before = 'v1.1.0',"
            " version_after = 'v1.2.0' WHERE upgrade_id = %s AND status = 'pending'",
            (upgrade_id,),
        )
        conn.execute(
            "UPDATE system_upgrades SET status = 'completed', completed_at = NOW(),"
            " completed_customers = total_customers WHERE id = %s",
            (upgrade_id,),
        )
        conn.execute("UPDATE upgrade_runs SET status = 'ended', ended_at = NOW() WHERE upgrade_id = %s", (upgrade_id,))
        conn.execute("ANALYZE")


def seq_scans(url: str, queries: list[tuple[Any, Any]]) -> list[str]:
    """EXPLAIN each statement with its parameters: sequential scans of fleet-sized tables that an index
    should serve, i.e. that keep under a tenth of the table's rows, or run once per outer row (a loop's
    inner side, a subplan: O(N^2)). Reading the whole fleet once (planning a deploy) is a scan by design."""
    found: list[str] = []
    with psycopg.connect(url) as conn:
        sizes: dict[str, float] = dict(conn.execute("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s)",
                                  (list(FLEET_TABLES),)).fetchall())  # fmt: skip
        for query, params in queries:
            text = query if isinstance(query, str) else query.as_string(conn)
            if not text.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "INSERT", "DELETE")):
                continue
            try:
                plan = conn.execute("EXPLAIN (FORMAT JSON) " + text, params).fetchone()[0]  # type: ignore[index]
            except psycopg.Error:
                conn.rollback()
                continue
            finally:
                conn.rollback()
            for node, looped in _nodes(plan[0]["Plan"]):
                table = node.get("Relation Name")
                if node.get("Node Type") != "Seq Scan" or table not in FLEET_TABLES:
                    continue
                if looped or node.get("Plan Rows", 0) < 0.1 * float(sizes.get(table) or 0):
                    found.append(f"{table}{' (looped)' if looped else ''}: {' '.join(text.split())[:70]}")
                    if os.environ.get("BENCH_PLANS"):
                        print(text, params, json.dumps(plan, indent=1), sep="\n", file=sys.stderr)
    return sorted(set(found))


def _nodes(plan: dict[str, Any], looped: bool = False) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every plan node, and whether it runs once per row of something outside it."""
    yield plan, looped
    if plan.get("Node Type") == "Materialize":  # what it materializes runs once
        looped = False
    for child in plan.get("Plans", []):
        relation = child.get("Parent Relationship")
        hashed = f"hashed {child.get('Subplan Name')}" in json.dumps(plan.get("Filter", ""))
        inner = (relation == "SubPlan" and not hashed) or (
            relation == "Inner" and plan.get("Node Type") == "Nested Loop"
        )
        yield from _nodes(child, looped or inner)


def measure(
    url: str, counter: SqlCounter, name: str, action: Callable[[], Any], repeat: int = 5
) -> tuple[Call, list[Any]]:
    times, results = [], []
    counter.take_queries()
    first = None
    for index in range(repeat):
        before = counter.snapshot()
        began = time.perf_counter()
        results.append(action())
        times.append(time.perf_counter() - began)
        if index == 0:
            first = counter.snapshot() - before
            queries = counter.take_queries()
    assert first is not None
    return Call(name, statistics.median(times), first.statements + first.control, first.round_trips,
                seq_scans(url, queries)), results  # fmt: skip


def run(customers: int = 10_000) -> list[Call]:
    """Deploy, status, a page of logs, the customers list and the whole-upgrade rollback at N customers."""
    calls: list[Call] = []
    with (
        temporary_database("upgrades_bench_api") as url,
        LocalStepFunctions({name: load_function(name).lambda_handler for name in WORKER_FUNCTIONS}) as engine,
    ):
        seed_fleet(url, customers)
        parked = engine.create_state_machine_from_definition("parked", PARKED)
        env = {"DATABASE_URL": url, "UPGRADE_STATE_MACHINE_ARN": parked, "MANIFEST_BUCKET": engine.bucket,
               "CLUSTER_MODE": "url", "KUBE_API_URL": "http://127.0.0.1:9"}  # fmt: skip
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        factory.reset()
        counter = SqlCounter(keep_queries=True)
        try:
            with counter.installed():
                components = iter(("api", "dashboard", "exporter"))
                call_deploy, started = measure(
                    url, counter, f"deploy (plan + write {customers:,} rows)",
                    lambda: deploy(component=next(components), version="v1.2.0", strategy="batch", batchSize=500),
                    repeat=3,
                )  # fmt: skip
                calls.append(call_deploy)
                upgrade_id = started[0]["upgradeId"]
                calls.append(measure(url, counter, "status", lambda: status(upgrade_id))[0])
                calls.append(measure(url, counter, "logs (one page)", lambda: logs(upgrade_id))[0])
                calls.append(measure(url, counter, "customers list (one page)", lambda: call(
                    "api_customers", "api_customers_list", "/api/customers", {}, {"component": "api"}))[0])  # fmt: skip
                _finish_upgrade(url, int(upgrade_id))
                rollback, answers = measure(url, counter, f"whole-upgrade rollback ({customers:,} rows)",
                                            lambda: control("rollback", upgrade_id), repeat=1)  # fmt: skip
                code, answer = answers[0]
                if code != 202 or answer.get("customers") != customers:
                    raise RuntimeError(f"whole-upgrade rollback answered {code}: {str(answer)[:300]}")
                calls.append(rollback)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            factory.reset()
    return calls
