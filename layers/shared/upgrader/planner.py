"""Every strategy is a list of waves: the planner is the only place that knows the strategies."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from upgrader.models import DEFAULT_BATCH_SIZE, DEFAULT_CANARY_PERCENT

T = TypeVar("T")


def canary_size(total: int, percent: int) -> int:
    """ceil(total x percent / 100), at least one customer (and never more than there are)."""
    if total <= 0:
        return 0
    return min(total, max(1, math.ceil(total * percent / 100)))


def plan_waves(
    customers: Sequence[T], strategy: str, *, canary_percent: int | None = None, batch_size: int | None = None
) -> list[list[T]]:
    """Split the ordered target customers into waves.

    all    -> one wave with everyone;
    batch  -> waves of batch_size, run one after another;
    canary -> the canary wave, then (after /continue) everyone else.
    """
    items = list(customers)
    if not items:
        return []
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
    wave (the first wave of a canary upgrade) never tolerates a failure.
    """
    if strategy == "canary" and wave == 0:
        return 0
    threshold = threshold or {}
    if "count" in threshold:
        return int(threshold["count"])
    if "percent" in threshold:
        return int(wave_size * float(threshold["percent"]) / 100)
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


def plan_limit_problems(waves: int, strategy: str, bake_seconds: int, approval_timeout_seconds: int) -> list[str]:
    """Why a plan cannot run in one execution (empty when it can)."""
    problems = []
    if waves > MAX_WAVES:
        problems.append(
            f"{waves} waves: at most {MAX_WAVES} waves fit one execution (its history is capped at "
            f"{HISTORY_EVENTS_LIMIT} events, about {EVENTS_PER_WAVE} per wave); use a larger batchSize"
        )
    waiting = bake_seconds * max(waves - 1, 0) + (approval_timeout_seconds if strategy == "canary" else 0)
    if waiting > EXECUTION_LIMIT_SECONDS - EXECUTION_MARGIN_SECONDS:
        problems.append(
            f"the planned waits (bakeSeconds x {max(waves - 1, 0)} waves + the canary's approvalTimeoutSeconds) "
            f"come to {waiting} s; an execution may last at most {EXECUTION_LIMIT_SECONDS} s (one year), and "
            f"{EXECUTION_MARGIN_SECONDS} s are kept for the waves themselves"
        )
    return problems
