"""`make bench`: one table of ratios, every figure measured in this run.

    .venv/bin/python -m benchmarks.suite            # the whole table (about 10-15 minutes on 2 cores)
    .venv/bin/python -m benchmarks.suite --quick    # smaller sizes, to try the benchmark itself

Everything runs the real product: the real ASL on moto's executing Step Functions, the real handlers,
temporary databases on the machine's PostgreSQL, the SimulatedCluster over HTTP (see
benchmarks/rollouts.py). Counters: benchmarks/counting.py. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrader.infra.settings import Settings

from benchmarks import ROOT, api_latency, imports
from benchmarks.rollouts import Rollout, rollout

# List prices, us-east-1 (no free tier, first tier): Step Functions Standard per state transition; Lambda per
# request and per GB-second on arm64, the template's default Architecture (x86_64: 0.0000166667, 25 % more).
PRICE_TRANSITION = 0.025 / 1000
PRICE_LAMBDA_REQUEST = 0.20 / 1_000_000
PRICE_LAMBDA_GB_SECOND = 0.0000133334
STRATEGIES = ("all", "batch", "canary")


@dataclass
class Line:
    section: str
    measure: str
    value: str
    goal: str = ""
    verdict: str = ""


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, {platform.system()}"


def lambda_memory_mb() -> dict[str, int]:
    """Each function's MemorySize from template.yaml (the Globals' otherwise)."""
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    default = int(re.search(r"^Globals:.*?MemorySize: (\d+)", text, re.S | re.M).group(1))  # type: ignore[union-attr]
    memory: dict[str, int] = {}
    for block in re.split(r"\n  (?=[A-Za-z0-9]+:\n)", text):
        uri = re.search(r"CodeUri: functions/([a-z_]+)/", block)
        if uri:
            size = re.search(r"MemorySize: (\d+)", block)
            memory[uri.group(1)] = int(size.group(1)) if size else default
    return memory


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ sections
def history(large: int) -> list[Line]:
    """Parent history events at 10 and `large` customers, child events per customer; throughput."""
    lines: list[Line] = []
    for strategy in STRATEGIES:
        small_run = rollout(strategy, 10, progress="history")
        large_run = rollout(strategy, large, progress="history")
        small, big = sum(small_run.parent_events.values()), sum(large_run.parent_events.values())
        per_child = sorted(large_run.child_events.values())
        ok = small_run.execution == large_run.execution == "SUCCEEDED"
        lines.append(Line("history", f"{strategy}: parent events {large:,} / 10 customers",
                          f"{big} / {small} = {big / small:.2f}", "1.00", _verdict(ok and big == small)))  # fmt: skip
        lines.append(Line("history", f"{strategy}: child events per customer (min/median/max, {large:,})",
                          f"{per_child[0]}/{statistics.median(per_child):g}/{per_child[-1]}" if per_child else "-"))  # fmt: skip
        if strategy == "all":
            rate = large / large_run.seconds
            lines.append(Line("harness", f"all-at-once, {large:,} customers, 0.05 s Jobs, concurrency 50",
                              f"{rate:.1f} customers/s", ">= 20", _verdict(rate >= 20)))  # fmt: skip
    return lines


def efficiency(customers: int, concurrency: int, job_seconds: float) -> tuple[list[Line], dict[str, Rollout]]:
    lines: list[Line] = []
    runs: dict[str, Rollout] = {}
    for strategy in STRATEGIES:
        run = rollout(strategy, customers, job_seconds=job_seconds, poll_seconds=1, concurrency=concurrency,
                      progress="efficiency")  # fmt: skip
        runs[strategy] = run
        ideal = run.ideal_seconds(concurrency, job_seconds)
        measured = run.seconds - run.gate_seconds
        accounted = run.upgrade["completed"] == customers
        lines.append(Line("efficiency", f"{strategy}: T_ideal / T_measured (N={customers}, waves {_waves(run)})",
                          f"{ideal:.0f} s / {measured:.0f} s = {ideal / measured:.2f}", "",
                          "" if accounted else f"only {run.upgrade['completed']} completed"))  # fmt: skip
    return lines, runs


def _waves(run: Rollout) -> str:
    return "+".join(str(w) for w in run.waves) if len(run.waves) <= 4 else f"{len(run.waves)} waves"


def per_customer(runs: dict[str, Rollout], job_seconds: float, poll_seconds: int = 1) -> list[Line]:
    """Transitions and Lambda invocations per customer, and what 1,000 customers cost at list prices."""
    memory = lambda_memory_mb()
    lines: list[Line] = []
    for strategy, run in runs.items():
        n = run.customers
        gb_seconds = sum(run.lambdas.seconds[f] * memory.get(f, 512) / 1024 for f in run.lambdas.seconds)
        transitions_cost = run.transitions * PRICE_TRANSITION * 1000 / n
        requests_cost = run.invocations * PRICE_LAMBDA_REQUEST * 1000 / n
        duration_cost = gb_seconds * PRICE_LAMBDA_GB_SECOND * 1000 / n
        lines.append(Line("cost", f"{strategy}: state transitions / Lambda invocations per customer",
                          f"{run.transitions / n:.1f} / {run.invocations / n:.1f}"))  # fmt: skip
        lines.append(Line(
            "cost", f"{strategy}: $ per 1,000 customers ({job_seconds:g} s Jobs, {poll_seconds} s poll)",
            f"${transitions_cost + requests_cost + duration_cost:.3f} = ${transitions_cost:.3f} transitions"
            f" + ${requests_cost:.4f} requests + ${duration_cost:.3f} duration",
        ))  # fmt: skip
    return lines


def helm_durations(customers: int, concurrency: int, job_seconds: list[float], strategies: list[str]) -> list[Line]:
    """Efficiency and cost with Jobs as long as real helm upgrades (20 s, 60 s) and the product's default poll
    settings (JOB_POLL_SECONDS and the learned first wait, as deployed): what a customer costs beyond its Job."""
    poll = int(Settings.model_fields["job_poll_seconds"].default)
    lines: list[Line] = []
    for seconds in job_seconds:
        for strategy in strategies:
            run = rollout(strategy, customers, job_seconds=seconds, poll_seconds=poll, concurrency=concurrency,
                          progress=f"helm durations ({seconds:g} s Jobs, {poll} s poll)")  # fmt: skip
            ideal = run.ideal_seconds(concurrency, seconds)
            measured = run.seconds - run.gate_seconds
            ratio = ideal / measured
            accounted = run.upgrade["completed"] == customers
            goal = ">= 0.9" if seconds >= 60 else ""
            lines.append(Line(
                "helm durations", f"{strategy}: T_ideal / T_measured ({seconds:g} s Jobs, {poll} s poll, N={customers}, "
                f"concurrency {concurrency})", f"{ideal:.0f} s / {measured:.0f} s = {ratio:.2f}", goal,
                _verdict(ratio >= 0.9 if goal else None) if accounted else f"only {run.upgrade['completed']} completed",
            ))  # fmt: skip
            checks = run.lambdas.invocations["check_helm_job"] / customers
            lines.append(Line("helm durations", f"{strategy}: CheckHelmJob looks per customer ({seconds:g} s Jobs)",
                              f"{checks:.2f}"))  # fmt: skip
            lines += [
                Line("helm durations", line.measure, line.value)
                for line in per_customer({strategy: run}, seconds, poll)
            ]
    return lines


def saving(customers: int, job_seconds: float) -> list[Line]:
    """Transitions per customer with the first poll after the learned helm duration, against without."""
    without = rollout("all", customers, job_seconds=job_seconds, poll_seconds=1, concurrency=10, learn=False,
                      progress="learned wait (off)")  # fmt: skip
    learned = rollout("all", customers, job_seconds=job_seconds, poll_seconds=1, concurrency=10, learn=True,
                      progress="learned wait (on)")  # fmt: skip
    n = customers
    before, after = without.transitions / n, learned.transitions / n
    checks_before = without.lambdas.invocations["check_helm_job"] / n
    checks_after = learned.lambdas.invocations["check_helm_job"] / n
    label = f"{job_seconds:g} s Jobs, 1 s poll, N={n}"
    return [
        Line("learned wait", f"transitions per customer, off -> on ({label})",
             f"{before:.1f} -> {after:.1f} ({(after - before) / before:+.0%})", "fewer",
             _verdict(after < before)),
        Line("learned wait", "CheckHelmJob invocations per customer, off -> on",
             f"{checks_before:.1f} -> {checks_after:.1f}"),
        Line("learned wait", "rollout seconds, off -> on", f"{without.seconds:.0f} -> {learned.seconds:.0f}"),
    ]  # fmt: skip


def sql_per_customer(small: int, large: int) -> list[Line]:
    """Statements and round trips per customer: the difference between two fleet sizes, per customer."""
    a = rollout("all", small, count_sql=True, then_rollback=True, progress="SQL")
    b = rollout("all", large, count_sql=True, then_rollback=True, progress="SQL")
    lines: list[Line] = []
    for what, first, second in (("upgrade", a.sql, b.sql), ("rollback", a.rollback_sql, b.rollback_sql)):
        assert first is not None and second is not None
        diff = second - first
        n = large - small
        statements, trips = diff.statements / n, diff.round_trips / n
        lines.append(Line("SQL", f"{what}: statements per customer (+ BEGIN/COMMIT)",
                          f"{statements:.1f} (+ {diff.control / n:.1f})", "<= 5", _verdict(statements <= 5)))  # fmt: skip
        lines.append(Line("SQL", f"{what}: database round trips per customer", f"{trips:.1f}", "<= 5",
                          _verdict(trips <= 5)))  # fmt: skip
    return lines


def api(customers: int) -> list[Line]:
    lines: list[Line] = []
    for measured in api_latency.run(customers):
        goal = "< 2 s" if measured.name.startswith("deploy") else ""
        ok = measured.seconds < 2 if goal else None
        plans = "index scans" if not measured.seq_scans else "SEQ SCAN: " + "; ".join(measured.seq_scans)
        lines.append(Line("API", f"{measured.name} @ {customers:,}",
                          f"{measured.seconds * 1000:.0f} ms, {measured.round_trips} round trips; {plans}", goal,
                          _verdict(ok if not measured.seq_scans else False)))  # fmt: skip
    return lines


def cold_imports(repeat: int) -> list[Line]:
    lines: list[Line] = []
    for cost in imports.run(repeat):
        lines.append(Line("import", f"{cost.function}: cold import / libraries' floor (CPU s)",
                          f"{cost.seconds:.2f} / {cost.floor:.2f} = {cost.ratio:.2f}", "<= 1.2",
                          _verdict(cost.ratio <= 1.2)))  # fmt: skip
    return lines


def _efficiency_and_cost(args: argparse.Namespace) -> list[Line]:
    found, runs = efficiency(args.efficiency, args.concurrency, args.job_seconds)
    return found + per_customer(runs, args.job_seconds)


def _attempt(name: str, step: Callable[[], list[Line]]) -> list[Line]:
    """A section, tried twice: the machine's PostgreSQL is shared and may briefly refuse connections."""
    for attempt in (1, 2):
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - reported in the table; the other sections still run
            progress(f"{name} failed (attempt {attempt}): {type(exc).__name__}: {exc}")
            if attempt == 2:
                return [Line(_SECTIONS.get(name, name), f"{name}: not measured", f"{type(exc).__name__}: {exc}"[:120])]
            time.sleep(15)
    return []


_SECTIONS = {"sql": "SQL", "api": "API", "saving": "learned wait", "helm": "helm durations"}


# ------------------------------------------------------------------------------------------- output
def print_table(lines: list[Line], started: float, args: argparse.Namespace) -> None:
    widths = [max(len(getattr(line, f)) for line in lines) for f in ("section", "measure", "value", "goal")]
    header = f"{'':<{widths[0]}}  {'measure':<{widths[1]}}  {'value':<{widths[2]}}  {'goal':<{widths[3]}}  verdict"
    print(f"\nmake bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}")
    print(f"sizes: history 10 vs {args.large:,}; efficiency N={args.efficiency} concurrency {args.concurrency} "
          f"{args.job_seconds:g} s Jobs; API {args.api:,} customers; run took {(time.monotonic() - started) / 60:.1f} min")  # fmt: skip
    print(header)
    print("-" * len(header))
    section = None
    for line in lines:
        label = line.section if line.section != section else ""
        section = line.section
        print(f"{label:<{widths[0]}}  {line.measure:<{widths[1]}}  {line.value:<{widths[2]}}  "
              f"{line.goal:<{widths[3]}}  {line.verdict}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: try the benchmark, not the product")
    parser.add_argument("--large", type=int, default=1000, help="history: the large fleet (10 is the small)")
    parser.add_argument("--efficiency", type=int, default=500, help="efficiency: customers")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--api", type=int, default=10_000, help="API latency: inventory size")
    parser.add_argument(
        "--helm-seconds",
        type=float,
        nargs="+",
        default=[20.0, 60.0],
        help="helm durations: Job lengths, with the default poll settings (default 20 60)",
    )
    parser.add_argument(
        "--helm-strategies",
        nargs="+",
        choices=STRATEGIES,
        default=["all"],
        help="helm durations: strategies (default all; each 60 s run takes about an hour)",
    )
    parser.add_argument("--only", nargs="+",
                        choices=("history", "efficiency", "saving", "sql", "api", "import", "helm"))  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.large, args.efficiency, args.api = 40, 40, 500
    started = time.monotonic()
    wanted = set(args.only or ("history", "efficiency", "saving", "sql", "api", "import", "helm"))
    lines: list[Line] = []
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("api", lambda: api(args.api)),
        ("sql", lambda: sql_per_customer(10, 20 if args.quick else 50)),
        ("saving", lambda: saving(20 if args.quick else 60, 4.0)),
        ("history", lambda: history(args.large)),
        ("import", lambda: cold_imports(3)),
    ]
    steps.append(("efficiency", lambda: _efficiency_and_cost(args)))
    steps.append(("helm", lambda: helm_durations(args.efficiency, args.concurrency, args.helm_seconds,
                                                 args.helm_strategies)))  # fmt: skip
    for name, step in steps:
        if name in wanted:
            progress(f"{name} ...")
            found = _attempt(name, step)
            for line in found:
                progress(f"  {line.measure}: {line.value} {line.verdict}")
            lines += found
    order = ("history", "harness", "efficiency", "learned wait", "cost", "helm durations", "SQL", "API", "import")
    lines.sort(key=lambda line: order.index(line.section))
    print_table(lines, started, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
