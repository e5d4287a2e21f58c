"""A deploy: the plan (waves, gates, who is left out and why), its preview, and recording and starting it."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from upgrader.api.service.analysis import planned_analysis
from upgrader.api.service.images import ImageCheck, RegistryFactory, check_images
from upgrader.contract.models import (
    DeployRequest,
    DeployResponse,
    iso,
)
from upgrader.contract.plan_models import LeftOut, PlannedCustomer, PlannedWave, PlanResponse
from upgrader.contract.promotion_models import PromotionView
from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.contract.strategies import gate_after
from upgrader.fleet.inventory import InventoryRepository
from upgrader.infra.errors import (
    LimitExceeded,
    NoTargetCustomers,
)
from upgrader.infra.settings import Settings
from upgrader.infra.workflow import WorkflowGateway
from upgrader.promotion.evidence_repository import record_override
from upgrader.promotion.gate import PromotionGate
from upgrader.promotion.rules import force_of
from upgrader.rollout.compatibility import RuleRepository, refusal
from upgrader.rollout.run_records import TRAIN_DIGESTS
from upgrader.rollout.selection import Candidate, Plan, describe_left_out, plan_upgrade
from upgrader.rollout.upgrade_repository import NewLogRow, UpgradeRepository


def deploy_upgrade(
    request: DeployRequest,
    *,
    requested_by: str | None,
    repo: UpgradeRepository,
    inventory: InventoryRepository,
    rules: RuleRepository,
    workflow: WorkflowGateway,
    settings: Settings,
    promotion: PromotionGate,
    registry: RegistryFactory,
    now: datetime | None = None,
) -> DeployResponse:
    """Plan the upgrade (`upgrader.rollout.selection`: the same plan the dry run answers), record it and its
    per-customer rows in one transaction, then start the execution.

    Customers left out as pinned or already at the version are recorded as skipped rows with the
    reason. Where the component has a promotion rule, every ring the plan reaches must be allowed
    (`upgrader.promotion.gate`; NotPromoted otherwise, nothing written). If the execution cannot be
    started the recorded rows are deleted again, so a failed deploy leaves nothing behind. Last before
    anything is written, the images' pre-flight (`images_of`, the same as the plan's): a missing or mutable
    image refuses (422 ImagesRefused), a registry fault answers 503/502; each customer's row keeps its digests.
    """
    max_concurrency = concurrency_within_cap(
        request.max_concurrency, settings.max_concurrency_cap, default=settings.default_max_concurrency
    )
    now = now or datetime.now(UTC)
    force = force_of(request.force, request.force_reason, requested_by)
    plan = _plan(request, inventory=inventory, rules=rules, settings=settings, promotion=promotion, now=now)
    if plan.incompatible:
        raise refusal(plan.incompatible, request.in_words(),
                      hint="send skipIncompatible to leave them out, or change the rules")  # fmt: skip
    if not plan.waves:
        left_out = describe_left_out(plan.counts, request.version) or "the inventory has no customer"
        raise NoTargetCustomers(f"no active customer to upgrade: {left_out}; nothing to do")
    promotions = [p for component, version in request.changes.items()
                  for p in promotion.check(component, version, _rings_reached(plan), now, force)]  # fmt: skip
    forced = [p for p in promotions if p.forced is not None]
    images = images_of(request, plan, settings=settings, registry=registry)
    if (refused := images.refusal) is not None:
        raise refused
    # The chart is pinned for every customer: the requested version, else the one its release runs
    # (known from the inventory, or read from the release right before helm and recorded then).
    rows = [
        NewLogRow(t.customer_id, t.namespace, t.release_name, t.current_version, request.version, index,
                  request.chart_version or t.chart_version, ring=t.ring, components=train_row(request, t, images),
                  **_digests(images, t.customer_id, request.component))
        for index, wave in enumerate(plan.waves)
        for t in wave
    ] + [
        NewLogRow(e.candidate.customer_id, e.candidate.namespace, e.candidate.release_name,
                  e.candidate.current_version, request.version, -1, None, left_out=e.reason, detail=e.detail,
                  ring=e.candidate.ring, components=train_row(request, e.candidate))
        for e in plan.skipped
    ]  # fmt: skip
    current = Counter(t.current_version for t in plan.targets if t.current_version)
    sizes = [len(w) for w in plan.waves]
    parameters: dict[str, Any] = {
        "maxConcurrency": max_concurrency,
        "bakeSeconds": request.bake_seconds,
        "autoRollback": request.auto_rollback,
        "approvalTimeoutSeconds": plan.approval_timeout_seconds,
        "pollSeconds": settings.job_poll_seconds,
        "waveSizes": sizes,
        "healthCheck": request.health_check.model_dump(),
    }
    if request.train:
        parameters["components"] = request.changes
    if request.blue_green:
        parameters["blueGreen"] = True
        parameters["finalizeOldSlot"] = request.finalize_old_slot
    parameters.update(STRATEGIES.get(request.strategy).parameters(plan.wave_options, plan.step_gate))
    if plan.windows is not None:
        parameters["respectWindows"] = True
        parameters["windowDeadline"] = iso(plan.windows.deadline)
        parameters["expectedDurationSeconds"] = int(plan.windows.expected.total_seconds())
    if request.failure_threshold is not None:
        parameters["failureThreshold"] = request.failure_threshold.model_dump(exclude_none=True)
    if request.customer_ids is not None:
        parameters["customerIds"] = request.customer_ids
    if request.labels:
        parameters["labels"] = request.labels
    if request.include_pinned:
        parameters["includePinned"] = True
    if request.rings:
        parameters["rings"] = list(promotion.order.targets(dict.fromkeys(request.rings)))
    if forced:
        parameters["force"] = {"reason": forced[0].forced.reason, "by": requested_by,  # type: ignore[union-attr]
                               "rings": [p.ring for p in forced]}  # fmt: skip

    def record_forced(cur: Any, upgrade_id: int) -> None:
        for p in forced:
            record_override(cur, upgrade_id, p)

    if request.analysis is not None:
        parameters["analysis"] = request.analysis.stored()
    parameters["images"] = images.parameters()
    if request.allow_no_rollback_image:
        parameters["allowNoRollbackImage"] = True

    upgrade = repo.create_upgrade(
        component=request.component,
        from_version=current.most_common(1)[0][0] if current else None,
        to_version=request.version,
        strategy=request.strategy,
        parameters=parameters,
        metadata={"fromVersions": dict(current), "leftOut": plan.counts},
        requested_by=requested_by,
        rows=rows,
        total_waves=len(plan.waves),
        nonce=secrets.token_hex(4),
        chart_version=request.chart_version,
        within=record_forced,
        components=list(request.changes) if request.train else None,
    )
    name = upgrade["execution_name"]
    try:
        workflow.start(name, {"upgradeId": upgrade["id"], "runName": name, "operation": "upgrade"})
    except Exception:
        repo.delete_upgrade(upgrade["id"])
        raise
    also = describe_left_out(plan.counts, request.version)
    return DeployResponse(
        upgrade_id=str(upgrade["id"]),
        job_id=name,
        strategy=request.strategy,
        message=(f"release train {request.in_words()}: " if request.train else "")
        + STRATEGIES.get(request.strategy).message(sizes, plan.step_gate)
        + (f"; {also}" if also else ""),
        total=plan.total,
        waves=sizes,
        status=upgrade["status"],
        skipped=len(plan.skipped),
        left_out=plan.counts,
        components=request.changes if request.train else None,
    )


def plan_deploy(
    request: DeployRequest,
    *,
    repo: UpgradeRepository,
    inventory: InventoryRepository,
    rules: RuleRepository,
    settings: Settings,
    promotion: PromotionGate,
    registry: RegistryFactory,
    requested_by: str | None = None,
    now: datetime | None = None,
) -> PlanResponse:
    """What `deploy_upgrade` would do with this request now, without starting anything: the same plan, and
    the promotion decision for every ring it reaches."""
    concurrency_within_cap(request.max_concurrency, settings.max_concurrency_cap)
    now = now or datetime.now(UTC)
    force = force_of(request.force, request.force_reason, requested_by)
    plan = _plan(request, inventory=inventory, rules=rules, settings=settings, promotion=promotion, now=now)
    promotions = [p for component, version in request.changes.items()
                  for p in promotion.decide(component, version, _rings_reached(plan), now, force)]  # fmt: skip
    refused = [p for p in promotions if not p.allowed]
    images = images_of(request, plan, settings=settings, registry=registry)
    gates = [
        gate_after(
            request.strategy,
            index,
            last=index == len(plan.waves) - 1,
            step_gate=plan.step_gate,
            bake_seconds=request.bake_seconds,
        )  # fmt: skip
        for index in range(len(plan.waves))
    ]
    waves = [
        PlannedWave(
            wave=index,
            size=len(wave),
            gate=gates[index],
            customers=[
                PlannedCustomer(
                    customer_id=c.customer_id,
                    namespace=c.namespace,
                    from_version=c.current_version,
                    waits_for_window=iso(plan.waits.get(c.customer_id)),
                )
                for c in wave
            ],
        )  # fmt: skip
        for index, wave in enumerate(plan.waves)
    ]
    active = next(filter(None, (repo.active_upgrade_for(c) for c in request.changes)), None)
    also = describe_left_out(plan.counts, request.version)
    if refused:
        message = f"a deploy would be refused (422 NotPromoted): {refused[0].words()}"
    elif plan.incompatible:
        broken = len({v.customer_id for v in plan.incompatible})
        message = (f"a deploy would be refused (422): the version breaks compatibility rules for {broken} "
                   "customer(s) (see incompatible); skipIncompatible leaves them out")  # fmt: skip
    elif (no_images := images.refusal) is not None:
        message = f"a deploy would be refused (422 ImagesRefused): {no_images.message}"
    elif plan.waves:
        sizes = [len(w) for w in plan.waves]
        message = STRATEGIES.get(request.strategy).message(sizes, plan.step_gate).replace(" started", " would start")
    else:
        message = "nothing to do: no active customer to upgrade (a deploy would be refused)"
    return PlanResponse(
        component=request.component,
        version=request.version,
        components=request.changes if request.train else None,
        strategy=request.strategy,
        total=plan.total,
        waves=waves,
        skipped=len(plan.skipped),
        left_out=[
            LeftOut(customer_id=e.candidate.customer_id, reason=e.reason, detail=e.detail)  # type: ignore[arg-type]
            for e in plan.left_out
        ],  # fmt: skip
        left_out_counts=plan.counts,
        incompatible=[v.view() for v in plan.incompatible],
        respect_windows=plan.windows is not None,
        active_upgrade=str(active["id"]) if active else None,
        promotions=[PromotionView.model_validate(p.as_dict()) for p in promotions],
        message=message + (f"; {also}" if also else ""),
        analysis=planned_analysis(request.analysis, request.component, plan.waves, settings, now),
        images=images.view(),
    )


def _plan(
    request: DeployRequest,
    *,
    inventory: InventoryRepository,
    rules: RuleRepository,
    settings: Settings,
    promotion: PromotionGate,
    now: datetime,
) -> Plan:
    """The one plan deploy and dry run share: every customer with its ring, the request's rings checked
    against the order (UnknownRing naming rings[i])."""
    order = promotion.order
    return plan_upgrade(
        request,
        inventory.deploy_candidates(request.component, order.ring_of),
        approval_timeout_seconds=settings.approval_timeout_seconds,
        rules=rules.rules(None if request.train else request.component),
        rings=order.targets(dict.fromkeys(request.rings)) if request.rings else None,
        now=now,
    )


def train_row(
    request: DeployRequest, customer: Candidate, images: ImageCheck | None = None
) -> dict[str, dict[str, str | None]] | None:
    """A train's row: each component from what the customer runs to the train's version (None: not a train), and
    each of its other components' digests the pre-flight resolved (`TRAIN_DIGESTS`; the first component's are the
    row's columns)."""
    if not request.train:
        return None
    row: dict[str, dict[str, str | None]] = {}
    for c, v in request.changes.items():
        row[c] = {"from": customer.versions.get(c), "to": v}
        if images is not None and c != request.component:
            found = zip(TRAIN_DIGESTS, images.digests(customer.customer_id, c), strict=True)
            row[c].update({key: value for key, value in found if value is not None})
    return row


def images_of(request: DeployRequest, plan: Plan, *, settings: Settings, registry: RegistryFactory) -> ImageCheck:
    """The one images' pre-flight deploy and dry run share, over the customers in the plan's waves and every
    component the request sets (a release train: each of its components)."""
    return check_images(request.changes, plan.targets, settings=settings, registry=registry,
                        allow_no_rollback_image=request.allow_no_rollback_image)  # fmt: skip


def _digests(images: ImageCheck, customer_id: str, component: str) -> dict[str, str | None]:
    repository, target, rollback = images.digests(customer_id, component)
    return {"image_repository": repository, "target_digest": target, "rollback_digest": rollback}


def _rings_reached(plan: Plan) -> list[str]:
    """The rings of the customers the plan changes (in a wave)."""
    return sorted({t.ring for t in plan.targets if t.ring is not None})


def concurrency_within_cap(requested: int | None, cap: int | None, *, default: int | None = None) -> int | None:
    """The requested maxConcurrency, refused (422) above the cap; when none is requested, the default
    lowered to the cap.

    The cap is the reserved concurrency of the per-customer workers (MAX_CONCURRENCY_CAP, set by the
    template): a run asking for more would have its workers throttled instead of running faster.
    """
    if requested is None:
        return default if default is None or cap is None else min(default, cap)
    if cap is not None and requested > cap:
        raise LimitExceeded(
            f"maxConcurrency {requested} exceeds the limit of {cap} (MAX_CONCURRENCY_CAP: the reserved "
            f"concurrency of the per-customer workers); ask for {cap} or less"
        )
    return requested
