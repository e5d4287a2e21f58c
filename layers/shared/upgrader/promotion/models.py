"""The API shapes of promotion, ready for the routes (docs/rings.md): snake_case fields, camelCase on the
wire (the alias generator the contract's models are moving to)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from upgrader.contract.models import FREE_TEXT_PATTERN, LabelValue, StrictModel
from upgrader.infra.errors import InvalidValue
from upgrader.promotion.rules import MAX_BAKE_SECONDS, MAX_FORCE_REASON, Force, PromotionRule


class PromotionRuleRequest(StrictModel):
    """PUT /api/promotion-rules/{component}: the rule a version of it must pass on each ring."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    min_success_percent: float = Field(
        ge=0, le=100, description="share of the previous ring's targeted customers that must have succeeded"
    )
    min_bake_seconds: int = Field(
        ge=0, le=MAX_BAKE_SECONDS, description="seconds since the last upgrade on the previous ring finished"
    )
    no_halt: bool = Field(default=True, description="refuse a version whose upgrade on the previous ring halted")

    def rule(self, component: str) -> PromotionRule:
        return PromotionRule(component, self.min_success_percent, self.min_bake_seconds, self.no_halt)  # type: ignore[arg-type]


class RingTargets(StrictModel):
    """The fields deploy and plan gain: which rings to target, and an override of the promotion rule."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    rings: list[LabelValue] | None = Field(default=None, min_length=1, max_length=20,
                                           description="target only customers of these rings")  # fmt: skip
    force: bool = Field(default=False, description="start even where the promotion rule refuses (needs forceReason)")
    force_reason: Annotated[str, StringConstraints(min_length=1, max_length=MAX_FORCE_REASON,
                                                   pattern=FREE_TEXT_PATTERN)] | None = Field(
        default=None, description="why the rule is overridden; recorded with the upgrade and shown"
    )  # fmt: skip

    def override(self, by: str | None) -> Force | None:
        """The Force this request asks for (None without force); InvalidValue naming the field otherwise."""
        if not self.force:
            if self.force_reason is not None:
                raise InvalidValue("forceReason", "given without force: true")
            return None
        return Force(self.force_reason or "", by)
