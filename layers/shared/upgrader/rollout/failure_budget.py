"""A wave's failure budget: how many of its customers may fail before the upgrade halts, whether it is
spent, the halt's reason in words and the budget as events carry it. The one place of the rule; the
repositories only count a wave's failures (`run_repository`, `customer_outcomes`), the lease re-checks it
before helm (`leases.LeaseSession.budget_exceeded`) and `orchestration` judges it after every slice.
What a strategy tolerates in one wave is `planner.tolerated_failures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from upgrader.rollout.planner import tolerated_failures


@dataclass(frozen=True)
class WaveBudget:
    """The budget of one wave (numbered as its rows are) of `size` customers, `failed` of them failed."""

    strategy: str
    wave: int
    size: int
    failed: int
    threshold: Mapping[str, Any] | None

    @property
    def tolerated(self) -> int:
        return tolerated_failures(self.strategy, self.wave, self.size, self.threshold)

    @property
    def exceeded(self) -> bool:
        return self.failed > self.tolerated

    def reason(self, total_waves: int) -> str:
        """Why the upgrade halts, in words (its halt_reason)."""
        return (f"wave {self.wave + 1} of {total_waves}: {self.failed} of {self.size} customers failed"
                f" (tolerated: {self.tolerated})")  # fmt: skip

    def as_event(self) -> dict[str, Any]:
        """The budget as events carry it: consumed is failed / (tolerated + 1), since the wave halts on
        the first failure past what it tolerates (1.0 and more: over budget)."""
        allowed = self.tolerated
        return {"wave": self.wave, "failed": self.failed, "size": self.size, "tolerated": allowed,
                "consumed": round(self.failed / (allowed + 1), 4)}  # fmt: skip
