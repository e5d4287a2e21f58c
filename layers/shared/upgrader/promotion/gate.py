"""The promotion gate of a deploy and a plan: may this version start on every ring the plan reaches?

Deploy and plan ask the same `PromotionGate.check`, right after the plan and before anything is written.
A ring without any active customer is passed over: the ring before ring N is the nearest earlier ring that
has customers (a version could never complete on an empty ring). A component without a configured rule is
not checked (a deploy behaves as before rings existed: the
specification's deploy to every customer keeps working); once an operator sets its rule, every ring the
plan reaches must be allowed, or the deploy is refused with NotPromoted (422) and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from upgrader.promotion.evidence_repository import EvidenceRepository
from upgrader.promotion.rings import RingOrder
from upgrader.promotion.rule_repository import PromotionRuleRepository
from upgrader.promotion.rules import Force, NotPromoted, Promotion, decide_promotion


@dataclass(frozen=True)
class PromotionGate:
    order: RingOrder
    evidence: EvidenceRepository
    rules: PromotionRuleRepository

    def decide(
        self, component: str, version: str, rings: Iterable[str], now: datetime, force: Force | None = None
    ) -> list[Promotion]:
        """The decision for each ring in `rings` (first to last); empty when the component has no rule."""
        rule = self.rules.configured(component)
        if rule is None:
            return []
        reached = sorted(set(rings), key=self.order.position)
        if not reached:
            return []
        order = self.populated_order(reached)
        found = self.evidence.evidence(component, version)
        return [decide_promotion(component, version, ring, order, rule, found, now, force=force)
                for ring in reached]  # fmt: skip

    def populated_order(self, also: Iterable[str] = ()) -> RingOrder:
        """The order without the rings that have no active customer (but with `also`): whose previous ring is
        the one a version must have passed."""
        return self.order_among(self.evidence.populated_rings(self.order) | set(also))

    def order_among(self, kept: set[str]) -> RingOrder:
        """The order of the rings in `kept` (all of them when none is kept)."""
        return RingOrder.parse([ring for ring in self.order.names if ring in kept] or list(self.order.names))

    def check(
        self, component: str, version: str, rings: Iterable[str], now: datetime, force: Force | None = None
    ) -> list[Promotion]:
        """`decide`, refusing (NotPromoted, the first ring refused) when any ring is not allowed."""
        promotions = self.decide(component, version, rings, now, force)
        for promotion in promotions:
            if not promotion.allowed:
                raise NotPromoted(promotion)
        return promotions
