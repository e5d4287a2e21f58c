"""The plan's arithmetic: waves as the strategy (`upgrader.contract.strategies`) cuts them, the failures a
wave tolerates and what fits one execution."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from upgrader.contract.strategies import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE  # re-exported: defined there
from upgrader.contract.strategies import DEFAULT_CANARY_PERCENT as DEFAULT_CANARY_PERCENT
from upgrader.contract.strategies import PROGRESSIONS as PROGRESSIONS
from upgrader.contract.strategies import REGISTRY, WaveOptions, tolerates_failures
from upgrader.contract.strategies import canary_size as canary_size
from upgrader.contract.strategies import progressive_steps as progressive_steps

T = TypeVar("T")


def plan_waves(
    customers: Sequence[T], strategy: str, *, canary_percent: int | None = None, batch_size: int | None = None,
    steps: Sequence[int] | None = None,
) -> list[list[T]]:  # fmt: skip
    """Split the ordered target customers into waves, as the strategy (`upgrader.contract.strategies`) says."""
    items = list(customers)
    if not items:
        return []
    options = WaveOptions(
        canary_percent=DEFAULT_CANARY_PERCENT if canary_percent is None else canary_percent,
        batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
        steps=tuple(steps or ()),
    )
    return REGISTRY.get(strategy).waves(items, options)


def tolerated_failures(strategy: str, wave: int, wave_size: int, threshold: Mapping[str, Any] | None) -> int:
    """Failed customers a wave may have before the upgrade halts (the failure budget of one wave).

    Default: none (a safe default: one failure stops the roll-out and the operator decides). A canary
    wave (the first wave of a canary upgrade) never tolerates a failure. A percentage is of the wave's
    size, rounded down: `{"percent": 30}` of 9 customers tolerates 2 (2.7), of 7 also 2 (2.1).

    The share is computed in decimal, from the percentage as it was written: in binary floating point
    375 x 18.4 / 100 comes to 68.99999999999999, which would tolerate 68 failures instead of 69.
    """
    if not tolerates_failures(strategy, wave):
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
    approvals = REGISTRY.get(strategy).reserved_approvals(waves, step_gate)
    waiting = bake_seconds * max(waves - 1, 0) + approval_timeout_seconds * approvals
    if waiting > EXECUTION_LIMIT_SECONDS - EXECUTION_MARGIN_SECONDS:
        problems.append(
            f"the planned waits (bakeSeconds x {max(waves - 1, 0)} waves + approvalTimeoutSeconds x {approvals} "
            "approval gates) "
            f"come to {waiting} s; an execution may last at most {EXECUTION_LIMIT_SECONDS} s (one year), and "
            f"{EXECUTION_MARGIN_SECONDS} s are kept for the waves themselves"
        )
    return problems
