"""The API shapes of promotion (docs/rings.md): snake_case fields, camelCase on the wire."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from upgrader.contract.base import WHOLE, StrictModel
from upgrader.promotion.rules import MAX_BAKE_SECONDS, PromotionRule


class PromotionRuleRequest(StrictModel):
    """PUT /api/promotion-rules/{component}: the rule a version of it must pass on each ring."""

    min_success_percent: float = Field(
        ge=0,
        le=100,
        description="share of the previous ring's targeted customers that must have succeeded (kept to two decimals)",
    )
    min_bake_seconds: Annotated[int, Field(ge=0, le=MAX_BAKE_SECONDS), WHOLE] = Field(
        description="seconds since the last upgrade on the previous ring finished"
    )
    no_halt: bool = Field(default=True, description="refuse a version whose upgrade on the previous ring halted")

    def rule(self, component: str) -> PromotionRule:
        return PromotionRule(component, self.min_success_percent, self.min_bake_seconds, self.no_halt)  # type: ignore[arg-type]
