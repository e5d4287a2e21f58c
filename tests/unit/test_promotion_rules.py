"""Promotion rules (`upgrader.promotion.rules.decide_promotion`): each reason a version is refused on a ring,
the boundaries of X % and of the bake, the first ring, force, and the rule's own checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError
from upgrader.contract.models import DeployRequest
from upgrader.infra.errors import InvalidValue
from upgrader.promotion.evidence import RingEvidence, UpgradeTrace
from upgrader.promotion.models import PromotionRuleRequest
from upgrader.promotion.rings import RingOrder, UnknownRing
from upgrader.promotion.rules import (
    Force,
    NotPromoted,
    PromotionRule,
    decide_promotion,
    default_rule,
    force_of,
    require_promotion,
)

ORDER = RingOrder()
FINISHED = datetime(2026, 3, 1, 12, 0, 0)  # naive UTC, as the database gives it
RULE = PromotionRule("api", Decimal(90), 3600)


def trace(uid: int = 7, targeted: int = 10, succeeded: int = 10, *, status: str = "completed",
          halt: str | None = None, finished: datetime | None = FINISHED, active: bool = False) -> UpgradeTrace:  # fmt: skip
    return UpgradeTrace(uid, status, targeted, succeeded, halt, None if active else finished, active)


def on(ring: str, *traces: UpgradeTrace) -> dict[str, RingEvidence]:
    return {ring: RingEvidence.of("api", "v2.0.0", ring, traces)}


def decide(target: str, evidence: dict[str, RingEvidence], now: datetime, **kw):  # type: ignore[no-untyped-def]
    return decide_promotion("api", "v2.0.0", target, ORDER, RULE, evidence, now, **kw)


LATER = FINISHED + timedelta(hours=2)


def test_the_first_ring_takes_any_version_without_evidence():
    promotion = decide("staging", {}, LATER)
    assert promotion.allowed and promotion.previous_ring is None and promotion.missing == ()


def test_a_version_that_completed_on_the_previous_ring_is_allowed():
    promotion = decide("internal", on("staging", trace()), LATER)
    assert promotion.allowed
    assert promotion.previous_ring == "staging"
    assert promotion.evidence is not None and promotion.evidence.succeeded == 10


def test_never_ran_on_the_previous_ring():
    promotion = decide("production", on("staging", trace()), LATER)  # ran on staging, not on early
    assert not promotion.allowed
    assert [(m.reason, m.ring) for m in promotion.missing] == [("never_ran", "early")]


def test_a_ring_where_every_customer_was_left_out_is_never_ran():
    assert decide("internal", on("staging", trace(targeted=0, succeeded=0)), LATER).missing[0].reason == "never_ran"


def test_still_running_on_the_previous_ring():
    promotion = decide("internal", on("staging", trace(3), trace(4, active=True, status="in_progress")), LATER)
    assert [(m.reason, m.facts) for m in promotion.missing] == [("still_running", {"upgradeIds": ["4"]})]


def test_success_below_x_percent_shows_a_of_b():
    promotion = decide("internal", on("staging", trace(targeted=10, succeeded=8)), LATER)
    (missing,) = promotion.missing
    assert missing.reason == "success_too_low"
    assert missing.facts == {"succeeded": 8, "targeted": 10, "requiredPercent": 90.0}
    assert "8 of 10 targeted customers on staging succeeded (80.0 %), 90 % needed" in missing.words


@pytest.mark.parametrize(("succeeded", "allowed"), [(9, True), (8, False)])
def test_x_percent_is_a_minimum_reached_exactly(succeeded, allowed):
    assert decide("internal", on("staging", trace(targeted=10, succeeded=succeeded)), LATER).allowed is allowed


def test_x_percent_sums_the_upgrades_of_the_ring():
    # 4/5 and 5/5: 9 of 10 over the ring, although one upgrade alone is at 80 %
    assert decide("internal", on("staging", trace(1, 5, 4), trace(2, 5, 5)), LATER).allowed


def test_a_fractional_percent_is_compared_exactly():
    rule = PromotionRule("api", Decimal("66.67"), 0)
    ev = on("staging", trace(targeted=3, succeeded=2))  # 66.666... %
    assert not decide_promotion("api", "v2.0.0", "internal", ORDER, rule, ev, LATER).allowed
    rule = PromotionRule("api", Decimal("66.66"), 0)
    assert decide_promotion("api", "v2.0.0", "internal", ORDER, rule, ev, LATER).allowed


def test_a_halt_on_the_previous_ring_refuses_with_the_upgrade():
    halted = trace(12, 10, 10, status="halted", halt="wave 1 of 2: 1 of 5 failed")
    promotion = decide("internal", on("staging", trace(11), halted), LATER)
    assert [(m.reason, m.facts["upgradeId"]) for m in promotion.missing] == [("halted", "12")]
    assert "upgrade 12 halted on staging: wave 1 of 2" in promotion.missing[0].words


def test_a_rule_without_no_halt_lets_a_halted_ring_pass_on_its_counts():
    rule = PromotionRule("api", Decimal(50), 0, no_halt=False)
    ev = on("staging", trace(12, 10, 9, status="halted", halt="budget"))
    assert decide_promotion("api", "v2.0.0", "internal", ORDER, rule, ev, LATER).allowed


@pytest.mark.parametrize(("after", "allowed"), [(timedelta(seconds=3599), False), (timedelta(seconds=3600), True)])
def test_the_bake_ends_exactly_t_after_the_last_upgrade_finished(after, allowed):
    promotion = decide("internal", on("staging", trace(1, finished=FINISHED - timedelta(hours=5)), trace(2)),
                       FINISHED + after)  # fmt: skip
    assert promotion.allowed is allowed
    if not allowed:
        (missing,) = promotion.missing
        assert missing.reason == "bake_not_over"
        assert missing.facts == {"since": "2026-03-01T12:00:00.000Z", "until": "2026-03-01T13:00:00.000Z"}


def test_the_bake_compares_an_aware_now_in_utc():
    from zoneinfo import ZoneInfo

    now = (FINISHED + timedelta(seconds=3599)).replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert not decide("internal", on("staging", trace()), now).allowed


def test_every_missing_reason_is_told_at_once():
    ev = on("staging", trace(1, 10, 5, status="halted", halt="budget"))
    reasons = [m.reason for m in decide("internal", ev, FINISHED + timedelta(minutes=1)).missing]
    assert reasons == ["halted", "success_too_low", "bake_not_over"]


def test_an_unknown_target_ring_is_refused_naming_the_field():
    with pytest.raises(UnknownRing) as refused:
        decide("qa", {}, LATER, field_name="rings[0]")
    assert refused.value.field == "rings[0]"


def test_force_overrides_a_refusal_and_is_recorded_with_what_was_missing():
    force = Force("hotfix for incident 42", "arn:aws:iam::1:user/ops")
    promotion = decide("production", {}, LATER, force=force)
    assert promotion.allowed
    assert promotion.forced == force
    assert [m.reason for m in promotion.missing] == ["never_ran"]
    body = promotion.as_dict()
    assert body["forced"] == {"reason": "hotfix for incident 42", "by": "arn:aws:iam::1:user/ops"}
    assert "forced by arn:aws:iam::1:user/ops (hotfix for incident 42) although it never ran on early" in (
        promotion.words()
    )


def test_force_where_nothing_is_missing_records_no_override():
    assert decide("internal", on("staging", trace()), LATER, force=Force("just in case")).forced is None


@pytest.mark.parametrize("reason", ["", "   ", "a\x07b", "x" * 501])
def test_force_needs_a_reason(reason):
    with pytest.raises(InvalidValue) as refused:
        Force(reason)
    assert refused.value.field == "forceReason"


def test_a_refused_promotion_is_a_422_not_promoted_with_the_evidence():
    promotion = decide("internal", on("staging", trace(targeted=10, succeeded=1)), LATER)
    with pytest.raises(NotPromoted) as refused:
        require_promotion(promotion)
    assert refused.value.http_status == 422
    assert refused.value.promotion.as_dict()["missing"][0]["reason"] == "success_too_low"
    assert refused.value.promotion.as_dict()["evidence"]["upgrades"][0]["upgradeId"] == "7"
    assert "pass force with a forceReason" in refused.value.message
    assert require_promotion(decide("staging", {}, LATER)).allowed


def test_the_default_rule_wants_every_customer_and_no_bake():
    rule = default_rule("api")
    assert (rule.min_success_percent, rule.min_bake_seconds, rule.no_halt) == (Decimal(100), 0, True)
    ev = on("staging", trace(targeted=10, succeeded=9))
    assert not decide_promotion("api", "v2.0.0", "internal", ORDER, rule, ev, FINISHED).allowed


@pytest.mark.parametrize(
    ("percent", "bake", "field"),
    [(Decimal("100.01"), 0, "minSuccessPercent"), (-1, 0, "minSuccessPercent"), (float("nan"), 0, "minSuccessPercent"),
     (True, 0, "minSuccessPercent"), ("ninety", 0, "minSuccessPercent"),
     (50, -1, "minBakeSeconds"), (50, 1.5, "minBakeSeconds"), (50, 31 * 24 * 3600, "minBakeSeconds")],
)  # fmt: skip
def test_a_bad_rule_is_refused_naming_the_field(percent, bake, field):
    with pytest.raises(InvalidValue) as refused:
        PromotionRule("api", percent, bake)
    assert refused.value.field == field


@pytest.mark.parametrize(("body", "field"), [({"minSuccessPercent": 101, "minBakeSeconds": 0}, "minSuccessPercent"),
                                              ({"minSuccessPercent": 90, "minBakeSeconds": -5}, "minBakeSeconds")])  # fmt: skip
def test_the_rules_request_names_the_wire_field(body, field):
    with pytest.raises(ValidationError) as refused:
        PromotionRuleRequest.model_validate(body)
    assert [e["loc"] for e in refused.value.errors()] == [(field,)]


def test_a_deploys_force_needs_its_reason_and_a_reason_needs_force():
    assert force_of(True, "incident", "me") == Force("incident", "me")
    with pytest.raises(InvalidValue) as no_reason:
        force_of(True, None, "me")
    assert no_reason.value.field == "forceReason"
    assert force_of(False, None, "me") is None
    request = {"component": "api", "version": "v2.0.0", "strategy": "all"}
    cases: list[tuple[dict[str, object], str]] = [({"force": True}, "force needs a forceReason"), ({"force": True, "forceReason": "  "}, "force needs"),
                      ({"forceReason": "why"}, "without force")]  # fmt: skip
    for body, why in cases:
        with pytest.raises(ValidationError) as refused:
            DeployRequest.model_validate({**request, **body})
        assert [(e["loc"], why in e["msg"]) for e in refused.value.errors()] == [(("force",), True)]
