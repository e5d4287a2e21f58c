"""Promotion rules and the decision they make: may this version of this component start on that ring?

A version may start on ring N only once it has *completed* on ring N-1: at least X % of that ring's
targeted customers succeeded, no upgrade that carried it there halted, and at least T seconds have passed
since the last of those upgrades finished. The first ring takes any version. `force`, with a reason,
overrides a refusal; the result keeps both what was missing and who forced it.

`decide_promotion` is pure (the evidence and the clock are arguments): deploy, plan, `GET /api/promotions`
and the CLI's `promote` ask the same function (docs/rings.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from upgrader.contract.base import FREE_TEXT_PATTERN
from upgrader.infra.errors import InvalidValue, UpgradeError
from upgrader.infra.timestamps import iso
from upgrader.promotion.evidence import RingEvidence
from upgrader.promotion.rings import RingOrder

MAX_BAKE_SECONDS = 30 * 24 * 3600  # a month: longer is a typo, not a bake
MAX_FORCE_REASON = 500
_FREE_TEXT = re.compile(FREE_TEXT_PATTERN)


@dataclass(frozen=True)
class PromotionRule:
    """A component's rule. Checked however it is built (API, table, default), naming the API's field."""

    component: str
    min_success_percent: Decimal = Decimal(100)
    min_bake_seconds: int = 0
    no_halt: bool = True

    def __post_init__(self) -> None:
        percent = self.min_success_percent
        if isinstance(percent, bool) or not isinstance(percent, int | float | Decimal):
            raise InvalidValue("minSuccessPercent", f"a number from 0 to 100, not {percent!r}")
        try:
            value = percent if isinstance(percent, Decimal) else Decimal(str(percent))
        except InvalidOperation:
            raise InvalidValue("minSuccessPercent", f"{percent!r} is not a number") from None
        if isinstance(percent, bool) or not value.is_finite() or not Decimal(0) <= value <= Decimal(100):
            raise InvalidValue("minSuccessPercent", f"a percentage from 0 to 100, not {percent}")
        # kept to two decimals, as the table stores it: the rule decided on is the rule shown
        object.__setattr__(self, "min_success_percent", value.quantize(Decimal("0.01")))
        bake = self.min_bake_seconds
        if isinstance(bake, bool) or not isinstance(bake, int) or not 0 <= bake <= MAX_BAKE_SECONDS:
            raise InvalidValue("minBakeSeconds", f"whole seconds from 0 to {MAX_BAKE_SECONDS}, not {bake!r}")


def default_rule(component: str) -> PromotionRule:
    """The rule of a component nobody configured: every targeted customer of the previous ring succeeded,
    no halt, no bake (a bake is a choice per component; a silent default one would surprise)."""
    return PromotionRule(component)


@dataclass(frozen=True)
class Force:
    """An operator's override of a refusal, recorded with the promotion."""

    reason: str
    by: str | None = None

    def __post_init__(self) -> None:
        text = self.reason.strip() if isinstance(self.reason, str) else ""
        if not text:
            raise InvalidValue("forceReason", "force needs a reason (it is recorded and shown)")
        if len(self.reason) > MAX_FORCE_REASON or not _FREE_TEXT.match(self.reason):
            raise InvalidValue("forceReason", f"at most {MAX_FORCE_REASON} characters, no control characters")


def force_of(force: bool, reason: str | None, by: str | None) -> Force | None:
    """The override a deploy asks for (`force` with its `forceReason`, which the request's model pairs):
    None without force; InvalidValue naming forceReason when force comes without a usable reason."""
    return Force(reason or "", by) if force is True else None


# ------------------------------------------------------------------------------------ what is missing
Reason = Literal["never_ran", "still_running", "success_too_low", "halted", "bake_not_over"]


@dataclass(frozen=True)
class Missing:
    """One thing the previous ring's evidence lacks, with the facts that show it."""

    reason: Reason
    ring: str
    words: str
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "ring": self.ring, "message": self.words, **self.facts}


def _utc(ts: datetime) -> datetime:
    """Naive UTC, as the database stores and returns timestamps."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def missing_on(ring: str, rule: PromotionRule, seen: RingEvidence | None, now: datetime) -> list[Missing]:
    """What `seen` (the version on `ring`) lacks under `rule` at `now`; empty when the ring is passed."""
    if seen is None or not seen.upgrades or seen.targeted == 0:
        return [Missing("never_ran", ring, f"it never ran on {ring}")]
    found: list[Missing] = []
    if rule.no_halt:
        for u in seen.halts:
            found.append(Missing("halted", ring, f"upgrade {u.upgrade_id} halted on {ring}: {u.halt_reason or 'halted'}",
                                 {"upgradeId": str(u.upgrade_id), "haltReason": u.halt_reason}))  # fmt: skip
    if seen.running:
        ids = [str(u.upgrade_id) for u in seen.running]
        found.append(Missing("still_running", ring, f"upgrade {', '.join(ids)} on {ring} has not finished",
                             {"upgradeIds": ids}))  # fmt: skip
        return found  # neither its share of successes nor its bake is known before it ends
    if Decimal(seen.succeeded) * 100 < rule.min_success_percent * seen.targeted:
        share = Decimal(seen.succeeded) * 100 / seen.targeted
        found.append(Missing(
            "success_too_low", ring,
            f"{seen.succeeded} of {seen.targeted} targeted customers on {ring} succeeded "
            f"({share:.1f} %), {format(rule.min_success_percent.normalize(), 'f')} % needed",
            {"succeeded": seen.succeeded, "targeted": seen.targeted,
             "requiredPercent": float(rule.min_success_percent)},
        ))  # fmt: skip
    since = seen.last_finished_at
    if rule.min_bake_seconds and since is None:  # pragma: no cover - the repository always gives a finish time
        found.append(Missing("bake_not_over", ring, f"when it finished on {ring} is unknown", {"since": None}))
    elif since is not None:
        until = _utc(since) + timedelta(seconds=rule.min_bake_seconds)
        if _utc(now) < until:
            found.append(Missing("bake_not_over", ring, f"baking on {ring} since {iso(since)} until {iso(until)}",
                                 {"since": iso(since), "until": iso(until)}))  # fmt: skip
    return found


# ------------------------------------------------------------------------------------------ decision
@dataclass(frozen=True)
class Promotion:
    """The decision: allowed or not, on which evidence; `forced` is set when a force overrode a refusal."""

    component: str
    version: str
    ring: str
    previous_ring: str | None
    missing: tuple[Missing, ...] = ()
    evidence: RingEvidence | None = None
    forced: Force | None = None

    @property
    def allowed(self) -> bool:
        return not self.missing or self.forced is not None

    def words(self) -> str:
        head = f"{self.component} {self.version} on ring {self.ring}"
        if not self.missing:
            why = "the first ring" if self.previous_ring is None else f"it passed {self.previous_ring}"
            return f"{head}: allowed ({why})"
        lacks = "; ".join(m.words for m in self.missing)
        if self.forced is not None:
            return f"{head}: forced by {self.forced.by or 'an operator'} ({self.forced.reason}) although {lacks}"
        return f"{head}: not promoted: {lacks}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "version": self.version,
            "ring": self.ring,
            "previousRing": self.previous_ring,
            "allowed": self.allowed,
            "missing": [m.as_dict() for m in self.missing],
            "evidence": self.evidence.as_dict() if self.evidence is not None else None,
            "forced": {"reason": self.forced.reason, "by": self.forced.by} if self.forced is not None else None,
        }


class NotPromoted(UpgradeError):
    """A deploy to a ring the version has not earned (a 422 whose body carries the promotion)."""

    http_status = 422

    def __init__(self, promotion: Promotion) -> None:
        super().__init__(promotion.words() + "; pass force with a forceReason to override")
        self.promotion = promotion


def decide_promotion(
    component: str,
    version: str,
    target_ring: str,
    ring_order: RingOrder,
    rule: PromotionRule,
    evidence: Mapping[str, RingEvidence],
    now: datetime,
    *,
    force: Force | None = None,
    field_name: str = "rings",
) -> Promotion:
    """May `version` of `component` start on `target_ring`? `evidence`: the version's evidence per ring
    (a ring it never reached is absent). An unknown ring is an UnknownRing naming `field_name`."""
    if rule.component != component:
        raise ValueError(f"the rule of {rule.component} cannot decide for {component}")
    previous = ring_order.previous(target_ring, field_name)
    if previous is None:
        return Promotion(component, version, target_ring, None)
    seen = evidence.get(previous)
    missing = tuple(missing_on(previous, rule, seen, now))
    return Promotion(component, version, target_ring, previous, missing, seen, force if missing else None)


def require_promotion(promotion: Promotion) -> Promotion:
    """The promotion when allowed; NotPromoted otherwise (what a deploy raises before writing anything)."""
    if not promotion.allowed:
        raise NotPromoted(promotion)
    return promotion
