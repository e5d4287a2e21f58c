"""The rollout strategies, one object each, registered in one place (`REGISTRY`).

A strategy says how the targeted customers split into waves, which gate follows a wave (`gate_after`, the
one statement of it: the plan preview and the state machine's `evaluate_wave` both ask it), which waves
tolerate no failure at all (the rest of the failure budget is `rollout.failure_budget`), the request fields
that belong to it alone and its other request checks, the parameters a deploy stores for it, the words that
describe it (the deploy's message, the CLI's hint, the console's wave labels). The API's `Strategy` type,
the planner, the CLI, the console (`upgradectl/console`: a table generated from here), the metrics' series
and the event schemas ask the registry. A test may `REGISTRY.add(...)` one more strategy, then `remove` it.

Standard library only: the workers plan without loading the request models, the CLI without pydantic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from upgrader.infra.registry import Registry

T = TypeVar("T")

# The defaults of a deploy request (`upgrader.contract.models` states them in the API).
DEFAULT_CANARY_PERCENT = 10
DEFAULT_BATCH_SIZE = 10
# Cumulative percentages of the progressive presets.
PROGRESSIONS: dict[str, list[int]] = {
    "linear": [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
    "exponential": [1, 2, 4, 8, 16, 32, 64, 100],
}


def canary_size(total: int, percent: int) -> int:
    """ceil(total x percent / 100), at least one customer (and never more than there are)."""
    if total <= 0:
        return 0
    return min(total, max(1, math.ceil(total * percent / 100)))


def progressive_steps(steps: Sequence[int] | None, progression: str | None) -> list[int]:
    """The cumulative percentages of a progressive upgrade: the request's own, or a preset's."""
    if steps:
        return list(steps)
    return list(PROGRESSIONS[progression or "exponential"])


@dataclass(frozen=True)
class WaveOptions:
    """The request's sizing of the waves, defaults applied (`plan` of `rollout.selection`)."""

    canary_percent: int = DEFAULT_CANARY_PERCENT
    batch_size: int = DEFAULT_BATCH_SIZE
    steps: Sequence[int] = ()


class Strategy:
    """The base: everyone in one wave, no gate but a bake, every wave under the failure budget."""

    name = "all"
    summary = "everyone in one wave"  # the words that describe it (the CLI's --strategy help)
    wave_labels: tuple[str, ...] = ("all",)  # what the console calls wave i (the last label repeats)
    waves_without_failures: frozenset[int] = frozenset()  # waves that tolerate no failure, whatever the threshold
    own_fields: tuple[str, ...] = ()  # deploy request fields that go with this strategy only

    def waves(self, items: list[T], options: WaveOptions) -> list[list[T]]:
        return [items]

    def approval_after(self, wave: int, *, step_gate: str | None) -> bool:
        """Whether wave `wave` (not the last) is followed by an approval gate (POST /continue)."""
        return False

    def reserved_approvals(self, waves: int, step_gate: str | None) -> int:
        """Approval gates a plan of `waves` waves reserves time for (the one-execution limit)."""
        return sum(self.approval_after(wave, step_gate=step_gate) for wave in range(max(waves - 1, 0)))

    def request_problems(self, request: Any) -> list[str]:
        """What is wrong with a deploy request of this strategy beyond its fields' own checks."""
        return []

    def steps(self, request: Any) -> list[int]:
        return []

    def step_gate(self, request: Any) -> str | None:
        return None

    def parameters(self, options: WaveOptions, step_gate: str | None) -> dict[str, Any]:
        """What a deploy stores of this strategy's sizing in the upgrade's parameters."""
        return {}

    def message(self, sizes: list[int], step_gate: str | None) -> str:
        total = sum(sizes)
        return f"Upgrade started for all {total} {_customers(total)}"

    def continue_hint(self, step_gate: str | None) -> str | None:
        """The CLI's hint after a deploy, when the upgrade will wait for `continue`."""
        return None


class Canary(Strategy):
    name = "canary"
    summary = "the canary wave, then (after /continue) everyone else"
    wave_labels = ("canary", "rest")
    waves_without_failures = frozenset({0})

    def waves(self, items: list[T], options: WaveOptions) -> list[list[T]]:
        if not 1 <= options.canary_percent <= 100:
            raise ValueError("canary percent must be between 1 and 100")
        first = canary_size(len(items), options.canary_percent)
        return [items[:first], items[first:]] if first < len(items) else [items]

    def approval_after(self, wave: int, *, step_gate: str | None) -> bool:
        return wave == 0

    def reserved_approvals(self, waves: int, step_gate: str | None) -> int:
        return 1  # its one gate, reserved whatever the number of waves

    def parameters(self, options: WaveOptions, step_gate: str | None) -> dict[str, Any]:
        return {"canaryPercent": options.canary_percent}

    def message(self, sizes: list[int], step_gate: str | None) -> str:
        first, total = sizes[0], sum(sizes)
        rest = f"; {total - first} more after /continue" if len(sizes) > 1 else ""
        return f"Canary upgrade started for {first} {_customers(first)}{rest}"

    def continue_hint(self, step_gate: str | None) -> str | None:
        return "after checking the canary customers"


class Batch(Strategy):
    name = "batch"
    summary = "waves of batchSize customers, one after another"
    wave_labels = ("batch",)

    def waves(self, items: list[T], options: WaveOptions) -> list[list[T]]:
        if options.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        return [items[i : i + options.batch_size] for i in range(0, len(items), options.batch_size)]

    def parameters(self, options: WaveOptions, step_gate: str | None) -> dict[str, Any]:
        return {"batchSize": options.batch_size}

    def message(self, sizes: list[int], step_gate: str | None) -> str:
        total = sum(sizes)
        return f"Batch upgrade started for {total} {_customers(total)} in {len(sizes)} batches"


class Progressive(Strategy):
    name = "progressive"
    summary = "one wave per cumulative step, each followed by its gate (stepGate)"
    wave_labels = ("step",)
    own_fields = ("steps", "progression", "stepGate")

    def waves(self, items: list[T], options: WaveOptions) -> list[list[T]]:
        """One wave per cumulative step: step i ends at ceil(total x steps[i] / 100) customers (at least one in
        the first); steps that would add nobody are merged away."""
        steps = list(options.steps)
        if not steps or steps != sorted(set(steps)) or steps[-1] != 100 or steps[0] < 1:
            raise ValueError("progressive steps must be increasing percentages ending at 100")
        waves: list[list[T]] = []
        start = 0
        for percent in steps:
            end = canary_size(len(items), percent)
            if end > start:
                waves.append(items[start:end])
                start = end
        return waves

    def approval_after(self, wave: int, *, step_gate: str | None) -> bool:
        return step_gate == "manual"

    def request_problems(self, request: Any) -> list[str]:
        if request.steps is not None and request.progression is not None:
            return ["give steps or progression, not both"]
        if request.step_gate == "bake" and not request.bake_seconds:
            return ["stepGate bake needs bakeSeconds (how long each step bakes)"]
        return []

    def steps(self, request: Any) -> list[int]:
        return progressive_steps(request.steps, request.progression)

    def step_gate(self, request: Any) -> str | None:
        return str(request.step_gate or "manual")

    def parameters(self, options: WaveOptions, step_gate: str | None) -> dict[str, Any]:
        return {"steps": list(options.steps), "stepGate": step_gate}

    def message(self, sizes: list[int], step_gate: str | None) -> str:
        total = sum(sizes)
        then = {"manual": "each step waits for /continue", "bake": "each step bakes, then the next starts"}
        gate = f"; {then[step_gate or 'manual']}" if len(sizes) > 1 else ""
        return (f"Progressive upgrade started for {total} {_customers(total)} in {len(sizes)} steps of "
                f"{', '.join(str(s) for s in sizes)}{gate}")  # fmt: skip

    def continue_hint(self, step_gate: str | None) -> str | None:
        return "after checking each step" if (step_gate or "manual") == "manual" else None


def _customers(n: int) -> str:
    return "customer" if n == 1 else "customers"


REGISTRY: Registry[Strategy] = Registry("strategy", (Strategy(), Canary(), Batch(), Progressive()))


def strategy_names() -> tuple[str, ...]:
    return REGISTRY.names()


def gate_after(strategy: str, wave: int, *, last: bool, step_gate: str | None, bake_seconds: int) -> str | None:
    """What follows wave `wave` of an upgrade: "approval" (waits for /continue), "bake" (bakeSeconds, then on)
    or nothing (the next wave at once, or the end after the last). The plan preview shows it; at run time
    `evaluate_wave` asks it for the approval and the state machine bakes when `bakeSeconds` is set."""
    if last:
        return None
    if REGISTRY.get(strategy).approval_after(wave, step_gate=step_gate):
        return "approval"
    return "bake" if bake_seconds else None


def tolerates_failures(strategy: str, wave: int) -> bool:
    """False for a wave its strategy lets no customer fail in (a canary's first); a rollback run's `strategy`
    ("rollback") is no upgrade strategy and has no such wave."""
    return strategy not in REGISTRY or wave not in REGISTRY.get(strategy).waves_without_failures


def console_table() -> dict[str, dict[str, Any]]:
    """What the web console needs of each strategy (served as /console/strategies.js)."""
    return {
        s.name: {"waveLabels": list(s.wave_labels), "wavesWithoutFailures": sorted(s.waves_without_failures)}
        for s in REGISTRY
    }


def described() -> str:
    """Each strategy in its own words, for the CLI's --strategy help: "all: everyone in one wave; canary: ..."."""
    return "; ".join(f"{s.name}: {s.summary}" for s in REGISTRY)
