"""What the promotion API does: a version's path through the rings (`GET /api/promotions`) and the promotion
rules, changed with an audit trail (`/api/promotion-rules`). The decision is `upgrader.promotion.rules`, the
same one a deploy's gate asks (docs/rings.md)."""

from __future__ import annotations

from datetime import datetime

from upgrader.contract.models import iso
from upgrader.contract.promotion_models import (
    OverrideView,
    PromotionRuleChangeView,
    PromotionRuleHistoryResponse,
    PromotionRulesResponse,
    PromotionRuleView,
    PromotionsResponse,
    PromotionView,
    RingEvidenceView,
    RingPath,
)
from upgrader.infra.components import component_names
from upgrader.infra.errors import UpgradeError
from upgrader.promotion.gate import PromotionGate
from upgrader.promotion.models import PromotionRuleRequest
from upgrader.promotion.rule_repository import PromotionRuleRepository, StoredRule
from upgrader.promotion.rules import PromotionRule, decide_promotion, default_rule


class PromotionRuleNotFound(UpgradeError):
    http_status = 404


def promotions(component: str, version: str, *, gate: PromotionGate, now: datetime) -> PromotionsResponse:
    """For each ring, first to last: may the version start there (under the component's rule, or the default
    rule when none is set: shown, not enforced), what carried it there, and what was forced."""
    configured = gate.rules.configured(component)
    rule = configured or default_rule(component)
    found = gate.evidence.evidence(component, version)
    overrides = gate.evidence.overrides(component, version)
    populated = gate.evidence.populated_rings(gate.order)  # read once for every ring of the path
    path: list[RingPath] = []
    for ring in gate.order.names:
        order = gate.order_among(populated | {ring})  # an empty ring before this one is passed over, as the gate does
        decision = decide_promotion(component, version, ring, order, rule, found, now)
        seen = found.get(ring)
        path.append(
            RingPath(
                ring=ring,
                decision=PromotionView.model_validate(decision.as_dict()),
                evidence=RingEvidenceView.model_validate(seen.as_dict()) if seen is not None else None,
                overrides=[
                    OverrideView(
                        upgrade_id=str(o["upgrade_id"]),
                        ring=o["ring"],
                        reason=o["reason"],
                        forced_by=o["forced_by"],
                        missing=o["missing"],
                        created_at=iso(o["created_at"]) or "",
                    )
                    for o in overrides
                    if o["ring"] == ring
                ],  # fmt: skip
            )
        )
    unfinished = (ring for ring in gate.order_among(populated).names if ring not in found or found[ring].running)
    return PromotionsResponse(
        component=component,  # type: ignore[arg-type]
        version=version,
        rule=_view(rule, configured is not None),
        enforced=configured is not None,
        rings=path,
        next_ring=next(unfinished, None),
    )


def rules(*, repo: PromotionRuleRepository, ring_order: tuple[str, ...]) -> PromotionRulesResponse:
    """Every component's rule: its own, or the default (configured: false, not enforced)."""
    stored = {s.rule.component: s for s in repo.rules()}
    views = [
        _stored_view(stored[c]) if c in stored else _view(default_rule(c), configured=False) for c in component_names()
    ]
    return PromotionRulesResponse(rules=views, ring_order=list(ring_order))


def set_rule(
    component: str, request: PromotionRuleRequest, *, actor: str | None, repo: PromotionRuleRepository
) -> PromotionRuleView:
    return _stored_view(repo.set(request.rule(component), actor))


def remove_rule(component: str, *, actor: str | None, repo: PromotionRuleRepository) -> PromotionRuleView:
    """Back to the default rule (not enforced); 404 when the component had no rule."""
    if not repo.delete(component, actor):
        raise PromotionRuleNotFound(f"{component} has no promotion rule (its deploys are not checked)")
    return _view(default_rule(component), configured=False)


def history(component: str, *, repo: PromotionRuleRepository) -> PromotionRuleHistoryResponse:
    return PromotionRuleHistoryResponse(
        component=component,  # type: ignore[arg-type]
        changes=[
            PromotionRuleChangeView(
                component=c.component,
                kind=c.kind,
                before=c.before,
                after=c.after,  # type: ignore[arg-type]
                actor=c.actor,
                created_at=iso(c.created_at) or "",
            )
            for c in repo.history(component)
        ],  # fmt: skip
    )


def _view(rule: PromotionRule, configured: bool) -> PromotionRuleView:
    return PromotionRuleView(
        component=rule.component,  # type: ignore[arg-type]
        min_success_percent=float(rule.min_success_percent),
        min_bake_seconds=rule.min_bake_seconds,
        no_halt=rule.no_halt,
        configured=configured,
    )


def _stored_view(stored: StoredRule) -> PromotionRuleView:
    return _view(stored.rule, True).model_copy(
        update={"updated_by": stored.updated_by, "updated_at": iso(stored.updated_at)}
    )
