"""What the HTTP API does, as domain functions over a repository and a workflow gateway."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from datetime import datetime
from typing import Any

from upgrader.compatibility import RuleRepository, refusal, violations
from upgrader.customer_models import LeftOut, PlannedCustomer, PlannedWave, PlanResponse
from upgrader.errors import (
    LimitExceeded,
    NoTargetCustomers,
    UpgradeNotFound,
    WrongState,
)
from upgrader.inventory import InventoryRepository
from upgrader.models import (
    AbortResponse,
    Attempt,
    ContinueResponse,
    DeployRequest,
    DeployResponse,
    LeftOutCustomer,
    LogEntry,
    LogsResponse,
    QueueJobResponse,
    QueueStatsResponse,
    ResumeRequest,
    ResumeResponse,
    RollbackResponse,
    RollbackUpgradeResponse,
    StatusResponse,
    UpgradeListResponse,
    UpgradeSummary,
    WindowWait,
    iso,
)
from upgrader.planner import plan_limit_problems
from upgrader.reconciliation import ReconcileRepository, end_if_dead
from upgrader.repository import NewLogRow, RunRepository, UpgradeRepository
from upgrader.resumes import ResumeRepository
from upgrader.rollbacks import RollbackRepository
from upgrader.selection import describe_left_out, plan_upgrade
from upgrader.settings import Settings
from upgrader.windows import WindowRepository, release_window_waits
from upgrader.workflow import WorkflowGateway, epoch_ms

STRATEGY_WORDS = {"all": "Upgrade", "canary": "Canary upgrade", "batch": "Batch upgrade"}


def deploy_upgrade(
    request: DeployRequest,
    *,
    requested_by: str | None,
    repo: UpgradeRepository,
    inventory: InventoryRepository,
    rules: RuleRepository,
    workflow: WorkflowGateway,
    settings: Settings,
    now: datetime | None = None,
) -> DeployResponse:
    """Plan the upgrade (`upgrader.selection`: the same plan the dry run answers), record it and its
    per-customer rows in one transaction, then start the execution.

    Customers left out as pinned or already at the version are recorded as skipped rows with the
    reason. If the execution cannot be started the recorded rows are deleted again, so a failed deploy
    leaves nothing behind.
    """
    max_concurrency = concurrency_within_cap(
        request.maxConcurrency, settings.max_concurrency_cap, default=settings.default_max_concurrency
    )
    plan = plan_upgrade(
        request,
        inventory.deploy_candidates(request.component),
        approval_timeout_seconds=settings.approval_timeout_seconds,
        rules=rules.rules(request.component),
        now=now,
    )
    if plan.incompatible:
        raise refusal(plan.incompatible, f"{request.component} {request.version}",
                      hint="send skipIncompatible to leave them out, or change the rules")  # fmt: skip
    if not plan.waves:
        left_out = describe_left_out(plan.counts, request.version) or "the inventory has no customer"
        raise NoTargetCustomers(f"no active customer to upgrade: {left_out}; nothing to do")
    # The chart is pinned for every customer: the requested version, else the one its release runs
    # (known from the inventory, or read from the release right before helm and recorded then).
    rows = [
        NewLogRow(t.customer_id, t.namespace, t.release_name, t.current_version, request.version, index,
                  request.chartVersion or t.chart_version)
        for index, wave in enumerate(plan.waves)
        for t in wave
    ] + [
        NewLogRow(e.candidate.customer_id, e.candidate.namespace, e.candidate.release_name,
                  e.candidate.current_version, request.version, -1, None, left_out=e.reason, detail=e.detail)
        for e in plan.skipped
    ]  # fmt: skip
    current = Counter(t.current_version for t in plan.targets if t.current_version)
    sizes = [len(w) for w in plan.waves]
    parameters: dict[str, Any] = {
        "maxConcurrency": max_concurrency,
        "bakeSeconds": request.bakeSeconds,
        "autoRollback": request.autoRollback,
        "approvalTimeoutSeconds": plan.approval_timeout_seconds,
        "pollSeconds": settings.job_poll_seconds,
        "waveSizes": sizes,
        "healthCheck": request.healthCheck.model_dump(),
    }
    if request.blueGreen:
        parameters["blueGreen"] = True
        parameters["finalizeOldSlot"] = request.finalizeOldSlot
    if request.strategy == "canary":
        parameters["canaryPercent"] = plan.canary_percent
    if request.strategy == "batch":
        parameters["batchSize"] = plan.batch_size
    if request.strategy == "progressive":
        parameters["steps"] = plan.steps
        parameters["stepGate"] = plan.step_gate
    if plan.windows is not None:
        parameters["respectWindows"] = True
        parameters["windowDeadline"] = iso(plan.windows.deadline)
        parameters["expectedDurationSeconds"] = int(plan.windows.expected.total_seconds())
    if request.failureThreshold is not None:
        parameters["failureThreshold"] = request.failureThreshold.model_dump(exclude_none=True)
    if request.customerIds is not None:
        parameters["customerIds"] = request.customerIds
    if request.labels:
        parameters["labels"] = request.labels
    if request.includePinned:
        parameters["includePinned"] = True

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
        chart_version=request.chartVersion,
    )
    name = upgrade["execution_name"]
    try:
        workflow.start(name, {"upgradeId": upgrade["id"], "runName": name, "operation": "upgrade"})
    except Exception:
        repo.delete_upgrade(upgrade["id"])
        raise
    also = describe_left_out(plan.counts, request.version)
    return DeployResponse(
        upgradeId=str(upgrade["id"]),
        jobId=name,
        strategy=request.strategy,
        message=_deploy_message(request.strategy, sizes, plan.step_gate) + (f"; {also}" if also else ""),
        total=plan.total,
        waves=sizes,
        status=upgrade["status"],
        skipped=len(plan.skipped),
        leftOut=plan.counts,
    )


def plan_deploy(
    request: DeployRequest,
    *,
    repo: UpgradeRepository,
    inventory: InventoryRepository,
    rules: RuleRepository,
    settings: Settings,
    now: datetime | None = None,
) -> PlanResponse:
    """What `deploy_upgrade` would do with this request now, without starting anything: the same plan."""
    concurrency_within_cap(request.maxConcurrency, settings.max_concurrency_cap)
    plan = plan_upgrade(
        request,
        inventory.deploy_candidates(request.component),
        approval_timeout_seconds=settings.approval_timeout_seconds,
        rules=rules.rules(request.component),
        now=now,
    )
    gates = _gates(request, len(plan.waves), plan.step_gate)
    waves = [
        PlannedWave(
            wave=index,
            size=len(wave),
            gate=gates[index],
            customers=[
                PlannedCustomer(
                    customerId=c.customer_id,
                    namespace=c.namespace,
                    fromVersion=c.current_version,
                    waitsForWindow=iso(plan.waits.get(c.customer_id)),
                )
                for c in wave
            ],
        )  # fmt: skip
        for index, wave in enumerate(plan.waves)
    ]
    active = repo.active_upgrade_for(request.component)
    also = describe_left_out(plan.counts, request.version)
    if plan.incompatible:
        broken = len({v.customer_id for v in plan.incompatible})
        message = (f"a deploy would be refused (422): the version breaks compatibility rules for {broken} "
                   "customer(s) (see incompatible); skipIncompatible leaves them out")  # fmt: skip
    elif plan.waves:
        sizes = [len(w) for w in plan.waves]
        message = _deploy_message(request.strategy, sizes, plan.step_gate).replace(" started", " would start")
    else:
        message = "nothing to do: no active customer to upgrade (a deploy would be refused)"
    return PlanResponse(
        component=request.component,
        version=request.version,
        strategy=request.strategy,
        total=plan.total,
        waves=waves,
        skipped=len(plan.skipped),
        leftOut=[
            LeftOut(customerId=e.candidate.customer_id, reason=e.reason, detail=e.detail)  # type: ignore[arg-type]
            for e in plan.left_out
        ],  # fmt: skip
        leftOutCounts=plan.counts,
        incompatible=[v.view() for v in plan.incompatible],
        respectWindows=plan.windows is not None,
        activeUpgrade=str(active["id"]) if active else None,
        message=message + (f"; {also}" if also else ""),
    )


def _gates(request: DeployRequest, waves: int, step_gate: str | None) -> list[str | None]:
    """What follows each wave: the canary's approval gate after its first wave, a progressive step's
    approval after every step (stepGate manual), a bake between waves."""
    gates: list[str | None] = []
    for index in range(waves):
        last = index == waves - 1
        if request.strategy == "canary" and index == 0 and not last or step_gate == "manual" and not last:
            gates.append("approval")
        elif not last and request.bakeSeconds:
            gates.append("bake")
        else:
            gates.append(None)
    return gates


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


def _deploy_message(strategy: str, sizes: list[int], step_gate: str | None = None) -> str:
    total = sum(sizes)
    noun = "customer" if total == 1 else "customers"
    if strategy == "progressive":
        then = {"manual": "each step waits for /continue", "bake": "each step bakes, then the next starts"}
        gate = f"; {then[step_gate or 'manual']}" if len(sizes) > 1 else ""
        return (f"Progressive upgrade started for {total} {noun} in {len(sizes)} steps of "
                f"{', '.join(str(s) for s in sizes)}{gate}")  # fmt: skip
    if strategy == "canary":
        first = sizes[0]
        rest = f"; {total - first} more after /continue" if len(sizes) > 1 else ""
        return f"Canary upgrade started for {first} {'customer' if first == 1 else 'customers'}{rest}"
    if strategy == "batch":
        return f"Batch upgrade started for {total} {noun} in {len(sizes)} batches"
    return f"Upgrade started for all {total} {noun}"


def get_status(upgrade_id: int, *, repo: UpgradeRepository, windows: WindowRepository) -> StatusResponse:
    """The upgrade's figures, all read from one snapshot: a customer that moves meanwhile (deferred to its
    window, claimed, finished) is counted once, where the lists say it is."""
    with repo.snapshot():
        return _status(upgrade_id, repo=repo, windows=windows)


def _status(upgrade_id: int, *, repo: UpgradeRepository, windows: WindowRepository) -> StatusResponse:
    upgrade = _upgrade_or_404(repo, upgrade_id)
    counts = repo.upgrade_counts(upgrade_id)
    attempts = [
        Attempt(
            jobId=a["run_name"],
            attempt=a["attempt"],
            status=a["status"],
            stopReason=a["stop_reason"],
            endReason=a["end_reason"],
            requestedBy=a["requested_by"],
            startedAt=iso(a["created_at"]),
            endedAt=iso(a["ended_at"]),
        )
        for a in repo.attempts(upgrade_id)
    ]
    return StatusResponse(
        upgradeId=str(upgrade["id"]),
        component=upgrade["component"],
        version=upgrade["to_version"],
        fromVersion=upgrade["from_version"],
        strategy=upgrade["strategy"],
        total=upgrade["total_customers"],
        completed=counts.get("completed", 0),
        failed=counts.get("failed", 0) + counts.get("rolled_back", 0),
        inProgress=counts.get("in_progress", 0),
        pending=counts.get("pending", 0),
        skipped=counts.get("skipped", 0),
        rolledBack=counts.get("rolled_back", 0) + counts.get("rolled_back_by_request", 0),
        status=upgrade["status"],
        awaitingContinue=upgrade["status"] == "awaiting_continue",
        currentWave=upgrade["current_wave"],
        totalWaves=upgrade["total_waves"],
        haltReason=upgrade["halt_reason"],
        jobId=upgrade["execution_name"],
        requestedBy=upgrade["requested_by"],
        parameters=upgrade["parameters"] or {},
        createdAt=iso(upgrade["created_at"]) or "",
        startedAt=iso(upgrade["started_at"]),
        completedAt=iso(upgrade["completed_at"]),
        chartVersion=upgrade["chart_version"],
        waitingForLease=counts.get("waiting_for_lease", 0),
        gate=upgrade["gate"],
        gateUntil=iso(upgrade["gate_until"]),
        attempts=attempts,
        continuedBy=upgrade.get("continued_by"),
        continuedAt=iso(upgrade.get("continued_at")),
        blueGreen=bool((upgrade["parameters"] or {}).get("blueGreen")),
        leftOut={k.removeprefix("left_out:"): n for k, n in counts.items() if k.startswith("left_out:")},
        waitingForWindow=[
            WindowWait(customerId=w["customer_id"], nextOpening=iso(w["window_opens_at"]) or "")
            for w in windows.waiting(upgrade_id)
        ],
    )


def get_logs(
    upgrade_id: int,
    *,
    repo: UpgradeRepository,
    status: str | None = None,
    operation: str | None = None,
    customer_id: str | None = None,
    limit: int = 500,
    offset: int = 0,
) -> LogsResponse:
    _upgrade_or_404(repo, upgrade_id)
    total, rows = repo.list_logs(
        upgrade_id, status=status, operation=operation, customer_id=customer_id, limit=limit, offset=offset
    )
    entries = [
        LogEntry(
            id=r["id"],
            customer_id=r["customer_id"],
            component=r["component"],
            from_version=r["from_version"],
            to_version=r["to_version"],
            status=r["status"],
            started_at=iso(r["started_at"]),
            completed_at=iso(r["completed_at"]),
            output=r["output"],
            error=r["error"],
            operation=r["operation"],
            wave=r["wave"],
            attempt=r["attempt"],
            namespace=r["namespace"],
            job_name=r["job_name"],
            revision_before=r["revision_before"],
            revision_after=r["revision_after"],
            version_before=r["version_before"],
            version_after=r["version_after"],
            chart_version=r["chart_version"],
            rollback_of=r["rollback_of"],
            waiting_for=r["waiting_for"],
            left_out=r["left_out"],
        )
        for r in rows
    ]
    next_offset = offset + len(entries) if offset + len(entries) < total else None
    return LogsResponse(
        upgradeId=str(upgrade_id),
        count=len(entries),
        total=total,
        limit=limit,
        offset=offset,
        nextOffset=next_offset,
        logs=entries,
    )


def list_upgrades(
    *,
    repo: UpgradeRepository,
    component: str | None = None,
    status: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> UpgradeListResponse:
    rows = repo.list_upgrades(component=component, status=status, before_id=before, limit=limit)
    summaries = [
        UpgradeSummary(
            upgradeId=str(r["id"]),
            component=r["component"],
            version=r["to_version"],
            strategy=r["strategy"],
            status=r["status"],
            total=r["total_customers"],
            completed=r["completed_customers"],
            failed=r["failed_customers"],
            createdAt=iso(r["created_at"]) or "",
            startedAt=iso(r["started_at"]),
            completedAt=iso(r["completed_at"]),
            requestedBy=r["requested_by"],
        )
        for r in rows
    ]
    next_before = summaries[-1].upgradeId if len(summaries) == limit else None
    return UpgradeListResponse(count=len(summaries), upgrades=summaries, nextBefore=next_before)


def continue_upgrade(
    upgrade_id: int, *, continued_by: str | None, repo: UpgradeRepository, workflow: WorkflowGateway
) -> ContinueResponse:
    """Release the canary gate. Exactly one caller wins; the others get 409."""
    upgrade = _upgrade_or_404(repo, upgrade_id)
    released = repo.release_gate(
        upgrade_id,
        continued_by,
        lambda token: workflow.send_continue(token, {"continuedBy": continued_by or "unknown"}),
    )
    if released is None:
        current = repo.get_upgrade(upgrade_id) or upgrade
        raise WrongState(
            f"upgrade {upgrade_id} is not awaiting continue (status: {current['status']}); "
            "only a canary upgrade whose canary wave has finished (or a progressive one at a manual step gate) "
            "can be continued, once per gate"
        )
    return ContinueResponse(
        message="Upgrade continuation queued", upgradeId=str(upgrade_id), jobId=released["execution_name"]
    )


def request_rollback(
    upgrade_id: int,
    customer_id: str,
    *,
    requested_by: str | None,
    repo: UpgradeRepository,
    rollbacks: RollbackRepository,
    rules: RuleRepository,
    workflow: WorkflowGateway,
    force: bool = False,
) -> RollbackResponse:
    """Record a rollback of one customer and start its execution (helm runs as a Job).

    Only the upgrade's component is restored, to that customer's own previous version; other changes
    made to the release since stay (see `upgrader.rollbacks`).
    """
    _upgrade_or_404(repo, upgrade_id)
    if not force:
        _refuse_breaking_rollback(rollbacks.rollback_targets(upgrade_id, customer_id), rules=rules)
    row = rollbacks.create_rollback(upgrade_id, customer_id, requested_by=requested_by)
    try:
        workflow.start(row["run_name"], {"upgradeId": upgrade_id, "runName": row["run_name"], "operation": "rollback"})
    except Exception:
        rollbacks.delete_run(row["run_name"])
        raise
    return RollbackResponse(
        message="Rollback started",
        customerId=customer_id,
        namespace=row["namespace"],
        upgradeId=str(upgrade_id),
        rollbackId=row["id"],
        jobId=row["run_name"],
        toVersion=row["to_version"],
        status=row["status"],
    )


def _refuse_breaking_rollback(rows: list[dict[str, Any]], *, rules: RuleRepository) -> None:
    """A requested rollback that would break a compatibility rule is refused (422, nothing recorded)
    unless forced. Automatic rollbacks (autoRollback, abort with rollback) restore what was there and
    are not checked."""
    if not rows:
        return  # nothing to restore: the request's own checks answer (404, 409)
    component = str(rows[0]["component"])
    applicable = rules.rules(component)
    if not applicable:
        return
    versions = rules.customer_versions([r["customer_id"] for r in rows])
    found = [
        v
        for r in rows
        for v in violations(applicable, r["customer_id"], versions[r["customer_id"]], component, r["to_version"])
    ]
    if found:
        raise refusal(found, f"rolling {component} back", hint='send {"force": true} to roll back anyway')


def abort_upgrade(
    upgrade_id: int,
    *,
    aborted_by: str | None,
    reason: str | None,
    rollback: bool,
    repo: UpgradeRepository,
    workflow: WorkflowGateway,
    recon: ReconcileRepository,
    run_steps: RunRepository,
) -> AbortResponse:
    """Stop starting customers; running ones finish. With rollback, what was changed is undone after.

    Also stops the upgrade's running rollback runs. Once this returns, no helm Job is created for a
    customer that had not taken its release's lease before (see `upgrader.leases`).
    """
    _upgrade_or_404(repo, upgrade_id)
    text = f"aborted by {aborted_by or 'unknown'}" + (f": {reason}" if reason else "")
    stopped = repo.request_abort(
        upgrade_id,
        text,
        aborted_by=aborted_by,
        rollback=rollback,
        fail_gate=lambda token: workflow.send_failure(token, "UpgradeAborted", text),
        release_windows=lambda tokens: release_window_waits(tokens, text, workflow=workflow),
    )
    if stopped is None:
        current = repo.get_upgrade(upgrade_id) or {}
        raise WrongState(
            f"upgrade {upgrade_id} cannot be aborted: it is {current.get('status')} and no rollback run of it is "
            "running" + (" (already aborting)" if str(current.get("halt_reason") or "").startswith("aborted") else "")
        )
    row, runs = stopped
    for run in runs:  # an execution already gone (stopped in the console, failed): end its run now
        end_if_dead(run, executions=workflow, recon=recon, runs=run_steps)
    row = repo.get_upgrade(upgrade_id) or row
    upgrade_aborted = str(row.get("halt_reason") or "") == text
    then = " then the customers it upgraded are rolled back" if rollback and upgrade_aborted else ""
    what = "no further customer starts" if upgrade_aborted else "its rollback run starts no further customer"
    return AbortResponse(
        message=f"Abort requested: {what}; running ones finish{then}",
        upgradeId=str(upgrade_id),
        status=row["status"],
        haltReason=text,
        rollback=rollback and upgrade_aborted,
        stoppedRuns=[r["run_name"] for r in runs],
    )


def rollback_upgrade(
    upgrade_id: int,
    *,
    requested_by: str | None,
    max_concurrency: int | None,
    repo: UpgradeRepository,
    rollbacks: RollbackRepository,
    rules: RuleRepository,
    workflow: WorkflowGateway,
    max_concurrency_cap: int | None = None,
    force: bool = False,
) -> RollbackUpgradeResponse:
    """Roll every customer the upgrade changed back to its own previous version, last wave first."""
    concurrency_within_cap(max_concurrency, max_concurrency_cap)
    _upgrade_or_404(repo, upgrade_id)
    if not force:
        _refuse_breaking_rollback(rollbacks.rollback_targets(upgrade_id), rules=rules)
    run_name = f"rollback-{upgrade_id}-all-{secrets.token_hex(4)}"
    rows, left_out = rollbacks.create_upgrade_rollback(upgrade_id, requested_by=requested_by, run_name=run_name)
    if not rows:
        detail = "; ".join(f"{c.customer_id}: {c.reason}" for c in left_out[:5])
        raise WrongState(
            f"upgrade {upgrade_id} has no changed customer left to roll back" + (f" ({detail})" if detail else "")
        )
    request: dict[str, Any] = {"scope": "upgrade"}
    if max_concurrency:
        request["maxConcurrency"] = max_concurrency
    try:
        workflow.start(
            run_name,
            {"upgradeId": upgrade_id, "runName": run_name, "operation": "rollback", **request},
        )
    except Exception:
        rollbacks.delete_run(run_name)
        raise
    sizes = Counter(r["wave"] for r in rows)
    also = f"; {len(left_out)} left out (see leftOut)" if left_out else ""
    return RollbackUpgradeResponse(
        message=f"Rollback of {len(rows)} customers started, last wave first{also}",
        upgradeId=str(upgrade_id),
        jobId=run_name,
        customers=len(rows),
        waves=[sizes[w] for w in sorted(sizes)],
        leftOut=[LeftOutCustomer(customerId=c.customer_id, reason=c.reason) for c in left_out],
    )


def resume_upgrade(
    upgrade_id: int,
    request: ResumeRequest,
    *,
    requested_by: str | None,
    repo: UpgradeRepository,
    resumes: ResumeRepository,
    workflow: WorkflowGateway,
    settings: Settings,
) -> ResumeResponse:
    """Go on with a halted, aborted or failed upgrade: the customers not yet done, in a new execution."""
    upgrade = _upgrade_or_404(repo, upgrade_id)
    concurrency_within_cap(request.maxConcurrency, settings.max_concurrency_cap)
    overrides = request.model_dump(exclude_none=True, exclude={"retryFailed"})
    parameters = {**(upgrade["parameters"] or {}), **overrides}
    problems = plan_limit_problems(
        int(upgrade["total_waves"]), upgrade["strategy"], int(parameters.get("bakeSeconds", 0)),
        int(parameters.get("approvalTimeoutSeconds", settings.approval_timeout_seconds)),
        step_gate=parameters.get("stepGate"),
    )  # fmt: skip
    if problems:
        raise LimitExceeded("the resumed upgrade does not fit one execution: " + "; ".join(problems))
    row, resumed = resumes.resume(
        upgrade_id,
        parameters=overrides,
        retry_failed=request.retryFailed,
        requested_by=requested_by,
        nonce=secrets.token_hex(4),
        start=lambda name: workflow.start(name, {"upgradeId": upgrade_id, "runName": name, "operation": "upgrade"}),
    )
    attempt = len(repo.attempts(upgrade_id))
    return ResumeResponse(
        message=f"Upgrade resumed for {resumed} {'customer' if resumed == 1 else 'customers'} (attempt {attempt})",
        upgradeId=str(upgrade_id),
        jobId=row["execution_name"],
        attempt=attempt,
        customers=resumed,
        status=row["status"],
    )


def queue_stats(*, repo: UpgradeRepository, workflow: WorkflowGateway) -> QueueStatsResponse:
    executions = workflow.execution_counts()
    db = repo.queue_counts()
    return QueueStatsResponse(
        queue="system-upgrade",
        waiting=db["waiting"],
        active=executions.get("RUNNING", 0),
        completed=executions.get("SUCCEEDED", 0),
        failed=executions.get("FAILED", 0) + executions.get("TIMED_OUT", 0) + executions.get("ABORTED", 0),
        delayed=0,
        paused=0,
        awaitingContinue=db["awaiting"],
        source="stepfunctions",
    )


_STATES = {
    "RUNNING": "active",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "TIMED_OUT": "failed",
    "ABORTED": "failed",
}


def queue_job(job_id: str, *, workflow: WorkflowGateway) -> QueueJobResponse:
    described = workflow.describe(job_id)
    execution = described["execution"]
    output = execution.get("output")
    failed = execution.get("error") or execution.get("cause")
    return QueueJobResponse(
        id=job_id,
        name="system-upgrade" if job_id.startswith("upgrade-") else "customer-rollback",
        state=_STATES.get(execution["status"], execution["status"].lower()),
        data=_json_or_none(execution.get("input")),
        returnvalue=_json_or_none(output),
        failedReason=(f"{execution.get('error', '')}: {execution.get('cause', '')}".strip(": ") if failed else None),
        timestamp=epoch_ms(execution.get("startDate")),
        processedOn=epoch_ms(execution.get("startDate")),
        finishedOn=epoch_ms(execution.get("stopDate")),
        executionArn=execution["executionArn"],
        mapRuns=[
            {
                "mapRunArn": r["mapRunArn"],
                "startDate": epoch_ms(r.get("startDate")),
                "stopDate": epoch_ms(r.get("stopDate")),
            }
            for r in described["mapRuns"]
        ],
    )


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _upgrade_or_404(repo: UpgradeRepository, upgrade_id: int) -> dict[str, Any]:
    upgrade = repo.get_upgrade(upgrade_id)
    if upgrade is None:
        raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
    return upgrade
