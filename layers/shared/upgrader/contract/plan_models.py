"""The answer of POST /api/upgrades/plan (the deploy's dry run): its waves, who is left out and why, and what a
deploy would be refused for (upgrader.api.service.deploy builds it from the one plan deploy and dry run share)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from upgrader.contract.analysis_models import PlannedAnalysis
from upgrader.contract.base import Model
from upgrader.contract.customer_models import IncompatibleCustomer
from upgrader.contract.image_models import PlannedImages
from upgrader.contract.models import Component
from upgrader.contract.promotion_models import PromotionView

LeftOutReason = Literal[
    "already_at_version", "pinned", "incompatible", "outside_window", "suspended", "decommissioned", "not_matching"
]


class PlannedCustomer(Model):
    customer_id: str
    namespace: str
    from_version: str | None
    waits_for_window: str | None = Field(
        default=None,
        description="windows respected: when its maintenance window next opens with room for the expected "
        "duration, if not now (it then waits for it, without holding the wave's others)",
    )


class PlannedWave(Model):
    wave: int
    size: int
    gate: str | None = Field(description="what follows the wave: approval (canary /continue), bake, or null")
    customers: list[PlannedCustomer]


class LeftOut(Model):
    customer_id: str
    reason: LeftOutReason
    detail: str


class PlanResponse(Model):
    component: Component
    version: str
    components: dict[str, str] | None = Field(
        default=None, description="a release train: every component it sets -> its version; null for one component"
    )
    strategy: str
    total: int = Field(description="customers in the upgrade: in a wave, or recorded as skipped")
    waves: list[PlannedWave]
    skipped: int = Field(
        description="customers a deploy would record as skipped (pinned, already at version, incompatible)"
    )
    left_out: list[LeftOut] = Field(description="every customer not upgraded, with the reason")
    left_out_counts: dict[str, int]
    incompatible: list[IncompatibleCustomer] = Field(
        default_factory=list,
        description="customers the version would break a compatibility rule for (each rule broken): a deploy "
        "would be refused (422) unless skipIncompatible, which leaves them out (then listed in leftOut)",
    )
    respect_windows: bool = Field(default=False, description="customers start only inside their maintenance windows")
    active_upgrade: str | None = Field(
        description="an upgrade of this component that is active now: a deploy would be refused (409) until it ends"
    )
    promotions: list[PromotionView] = Field(
        default_factory=list,
        description="where the component has a promotion rule: the decision for each ring the plan reaches (a deploy "
        "is refused with 422 NotPromoted unless every one is allowed); empty without a rule",
    )
    message: str
    analysis: PlannedAnalysis | None = Field(
        default=None, description="the deploy's analysis checks, each query run once now (docs/analysis.md)"
    )
    images: PlannedImages | None = Field(default=None, description="the images' pre-flight (docs/images.md)")
