"""The API's shapes of rings and promotion: a promotion decision with its evidence (the 422 NotPromoted body,
the plan, `GET /api/promotions`) and the promotion rules. The decision itself is `upgrader.promotion.rules`;
these models are how it is written on the wire (camelCase)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from upgrader.contract.base import Model
from upgrader.contract.registered import Component

MissingReason = Literal["never_ran", "still_running", "success_too_low", "halted", "bake_not_over"]


class MissingView(Model):
    """One thing the previous ring's evidence lacks, with the facts of its kind."""

    reason: MissingReason
    ring: str = Field(description="the ring whose evidence lacks it (the ring before the target)")
    message: str
    upgrade_ids: list[str] | None = Field(default=None, description="still_running: the upgrades not finished")
    succeeded: int | None = Field(default=None, description="success_too_low: customers that succeeded")
    targeted: int | None = Field(default=None, description="success_too_low: customers targeted on the ring")
    required_percent: float | None = Field(default=None, description="success_too_low: the rule's minimum")
    upgrade_id: str | None = Field(default=None, description="halted: the upgrade that halted")
    halt_reason: str | None = Field(default=None, description="halted: why it halted")
    since: str | None = Field(default=None, description="bake_not_over: when the last upgrade on the ring finished")
    until: str | None = Field(default=None, description="bake_not_over: when the bake is over")


class UpgradeTraceView(Model):
    """One upgrade that carried the version on a ring, counted over its customers of that ring."""

    upgrade_id: str
    status: str
    targeted: int = Field(description="its customers of the ring it meant to change (left-out ones not counted)")
    succeeded: int = Field(description="of those, completed and not rolled back since")
    halt_reason: str | None
    finished_at: str | None = Field(description="null while it runs")


class RingEvidenceView(Model):
    """A version of a component on one ring, summed over the upgrades that carried it there."""

    ring: str
    targeted: int
    succeeded: int
    halts: list[str] = Field(description="the upgrades that halted on the ring")
    last_finished_at: str | None
    upgrades: list[UpgradeTraceView]


class ForcedView(Model):
    reason: str
    by: str | None


class PromotionView(Model):
    """May this version of this component start on this ring: the rule's decision and its evidence."""

    component: Component
    version: str
    ring: str = Field(description="the ring the version would start on")
    previous_ring: str | None = Field(description="the ring it must have passed; null for the first ring")
    allowed: bool
    missing: list[MissingView] = Field(description="what the previous ring's evidence lacks (empty: passed)")
    evidence: RingEvidenceView | None = Field(description="the version on the previous ring; null if it never ran")
    forced: ForcedView | None = Field(description="set when force overrode a refusal (recorded)")


class OverrideView(Model):
    """A promotion forced past a refusal: who, why, what was missing."""

    upgrade_id: str
    ring: str
    reason: str
    forced_by: str | None
    missing: list[MissingView]
    created_at: str


class PromotionRuleView(Model):
    component: Component
    min_success_percent: float = Field(description="share of the previous ring's targeted customers that succeeded")
    min_bake_seconds: int = Field(description="seconds since the last upgrade on the previous ring finished")
    no_halt: bool = Field(description="a version whose upgrade on the previous ring halted is refused")
    configured: bool = Field(description="false: no rule is set for the component, and deploys are not checked")
    updated_by: str | None = None
    updated_at: str | None = None


class PromotionRulesResponse(Model):
    rules: list[PromotionRuleView] = Field(description="every component, configured or not")
    ring_order: list[str] = Field(description="the rings, first to last (RING_ORDER)")


class PromotionRuleChangeView(Model):
    component: Component
    kind: Literal["set", "deleted"]
    before: dict[str, float | int | bool] | None
    after: dict[str, float | int | bool] | None
    actor: str | None
    created_at: str


class PromotionRuleHistoryResponse(Model):
    component: Component
    changes: list[PromotionRuleChangeView] = Field(description="oldest first")


class RingPath(Model):
    """One ring of a version's path: whether it may start there, what carried it there, what was forced."""

    ring: str
    decision: PromotionView
    evidence: RingEvidenceView | None = Field(description="the version on this ring; null: it never ran here")
    overrides: list[OverrideView] = Field(description="promotions to this ring forced past a refusal")


class PromotionsResponse(Model):
    """`GET /api/promotions`: a version's path through the rings, first to last."""

    component: Component
    version: str
    rule: PromotionRuleView
    enforced: bool = Field(description="false: the component has no promotion rule, so deploys are not refused")
    rings: list[RingPath]
    next_ring: str | None = Field(
        description="the first ring the version has not completed (never ran there, or still running): where "
        "`upgrade-customers promote` would deploy next; null once it completed on every ring"
    )
