"""Every strategy is a list of waves: the planner is the only place that knows the strategies."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")

# The defaults of a deploy request (`upgrader.contract.models` states them in the API); here so that the workers,
# which plan but never parse a request, do not load the request models.
DEFAULT_CANARY_PERCENT = 10
DEFAULT_BATCH_SIZE = 10


def canary_size(total: int, percent: int) -> int:
    """ceil(total x percent / 100), at least one customer (and never more than there are)."""
    if total <= 0:
        return 0
    return min(total, max(1, math.ceil(total * percent / 100)))


# Cumulative percentages of the progressive presets.
PROGRESSIONS: dict[str, list[int]] = {
    "linear": [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
    "exponential": [1, 2, 4, 8, 16, 32, 64, 100],
}


def progressive_steps(steps: Sequence[int] | None, progression: str | None) -> list[int]:
    """The cumulative percentages of a progressive upgrade: the request's own, or a preset's."""
    if steps:
        return list(steps)
    return list(PROGRESSIONS[progression or "exponential"])


def plan_waves(
    customers: Sequence[T], strategy: str, *, canary_percent: int | None = None, batch_size: int | None = None,
    steps: Sequence[int] | None = None,
) -> list[list[T]]:  # fmt: skip
    """Split the ordered target customers into waves.

    all         -> one wave with everyone;
    batch       -> waves of batch_size, run one after another;
    canary      -> the canary wave, then (after /continue) everyone else;
    progressive -> one wave per cumulative step: step i ends at ceil(total x steps[i] / 100) customers
                   (at least one in the first); steps that would add nobody are merged away.
    """
    items = list(customers)
    if not items:
        return []
    if strategy == "progressive":
        if not steps or list(steps) != sorted(set(steps)) or steps[-1] != 100 or steps[0] < 1:
            raise ValueError("progressive steps must be increasing percentages ending at 100")
        waves: list[list[T]] = []
        start = 0
        for percent in steps:
            end = canary_size(len(items), percent)
            if end > start:
                waves.append(items[start:end])
                start = end
        return waves
    if strategy == "all":
        return [items]
    if strategy == "batch":
        size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        if size < 1:
            raise ValueError("batch size must be at least 1")
        return [items[i : i + size] for i in range(0, len(items), size)]
    if strategy == "canary":
        percent = DEFAULT_CANARY_PERCENT if canary_percent is None else canary_percent
        if not 1 <= percent <= 100:
            raise ValueError("canary percent must be between 1 and 100")
        first = canary_size(len(items), percent)
        return [items[:first], items[first:]] if first < len(items) else [items]
    raise ValueError(f"unknown strategy {strategy!r}")


def tolerated_failures(strategy: str, wave: int, wave_size: int, threshold: Mapping[str, Any] | None) -> int:
    """Failed customers a wave may have before the upgrade halts (the failure budget of one wave).

    Default: none (a safe default: one failure stops the roll-out and the operator decides). A canary
    wave (the first wave of a canary upgrade) never tolerates a failure. A percentage is of the wave's
    size, rounded down: `{"percent": 30}` of 9 customers tolerates 2 (2.7), of 7 also 2 (2.1).

    The share is computed in decimal, from the percentage as it was written: in binary floating point
    375 x 18.4 / 100 comes to 68.99999999999999, which would tolerate 68 failures instead of 69.
    """
    if strategy == "canary" and wave == 0:
        return 0
    threshold = threshold or {}
    if "count" in threshold:
        return int(threshold["count"])
    if "percent" in threshold:
        # str() of a float is the shortest decimal that reads back as it: the percentage as written
        return math.floor(wave_size * Decimal(str(threshold["percent"])) / 100)
    return 0


# Step Functions' limits for one execution, and what a plan may use of them.
HISTORY_EVENTS_LIMIT = 25_000
# The parent's history grows per wave, never per customer: PrepareWave, the wave's Map Run, EvaluateWave,
# the choice and a gate or bake come to about 30 events (measured by `make bench`); 500 waves stay
# well under the limit with room for retries.
EVENTS_PER_WAVE = 30
MAX_WAVES = 500
EXECUTION_LIMIT_SECONDS = 365 * 24 * 3600
# Time the waves themselves need (helm, health checks) beyond the planned waits.
EXECUTION_MARGIN_SECONDS = 7 * 24 * 3600


def plan_limit_problems(
    waves: int, strategy: str, bake_seconds: int, approval_timeout_seconds: int, *, step_gate: str | None = None
) -> list[str]:
    """Why a plan cannot run in one execution (empty when it can)."""
    problems = []
    if waves > MAX_WAVES:
        problems.append(
            f"{waves} waves: at most {MAX_WAVES} waves fit one execution (its history is capped at "
            f"{HISTORY_EVENTS_LIMIT} events, about {EVENTS_PER_WAVE} per wave); use a larger batchSize"
        )
    approvals = 1 if strategy == "canary" else max(waves - 1, 0) if step_gate == "manual" else 0
    waiting = bake_seconds * max(waves - 1, 0) + approval_timeout_seconds * approvals
    if waiting > EXECUTION_LIMIT_SECONDS - EXECUTION_MARGIN_SECONDS:
        problems.append(
            f"the planned waits (bakeSeconds x {max(waves - 1, 0)} waves + approvalTimeoutSeconds x {approvals} "
            "approval gates) "
            f"come to {waiting} s; an execution may last at most {EXECUTION_LIMIT_SECONDS} s (one year), and "
            f"{EXECUTION_MARGIN_SECONDS} s are kept for the waves themselves"
        )
    return problems
