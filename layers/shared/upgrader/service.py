"""What the HTTP API does, as domain functions over a repository and a workflow gateway."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from typing import Any

from upgrader.errors import (
    InactiveCustomers,
    LimitExceeded,
    NoTargetCustomers,
    UnknownCustomers,
    UpgradeNotFound,
    WrongState,
)
from upgrader.models import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CANARY_PERCENT,
    AbortResponse,
    ContinueResponse,
    DeployRequest,
    DeployResponse,
    LogEntry,
    LogsResponse,
    QueueJobResponse,
    QueueStatsResponse,
    RollbackResponse,
    RollbackUpgradeResponse,
    StatusResponse,
    UpgradeListResponse,
    UpgradeSummary,
    iso,
)
from upgrader.planner import plan_waves
from upgrader.repository import NewLogRow, UpgradeRepository
from upgrader.settings import Settings
from upgrader.workflow import WorkflowGateway, epoch_ms

STRATEGY_WORDS = {"all": "Upgrade", "canary": "Canary upgrade", "batch": "Batch upgrade"}


def deploy_upgrade(
    request: DeployRequest,
    *,
    requested_by: str | None,
    repo: UpgradeRepository,
    workflow: WorkflowGateway,
    settings: Settings,
) -> DeployResponse:
    """Record the upgrade and its per-customer rows in one transaction, then start the execution.

    If the execution cannot be started the recorded rows are deleted again, so a failed deploy
    leaves nothing behind.
    """
    max_concurrency = concurrency_within_cap(
        request.maxConcurrency, settings.max_concurrency_cap, default=settings.default_max_concurrency
    )
    if request.customerIds is not None:
        known = repo.known_customer_ids(request.customerIds)
        unknown = [c for c in request.customerIds if c not in known]
        inactive = [c for c in request.customerIds if known.get(c, "active") != "active"]
        if unknown:
            raise UnknownCustomers(f"unknown customer id(s): {', '.join(unknown[:20])}")
        if inactive:
            raise InactiveCustomers(f"customer(s) not active: {', '.join(inactive[:20])}")
    targets = repo.target_customers(request.component, request.customerIds, request.labels)
    if not targets:
        raise NoTargetCustomers("no active customer matches this upgrade; nothing to do")

    canary_percent = request.canaryPercent if request.canaryPercent is not None else DEFAULT_CANARY_PERCENT
    batch_size = request.batchSize if request.batchSize is not None else DEFAULT_BATCH_SIZE
    waves = plan_waves(targets, request.strategy, canary_percent=canary_percent, batch_size=batch_size)
    rows = [
        NewLogRow(t.customer_id, t.namespace, t.release_name, t.current_version, request.version, index)
        for index, wave in enumerate(waves)
        for t in wave
    ]
    current = Counter(t.current_version for t in targets if t.current_version)
    parameters: dict[str, Any] = {
        "maxConcurrency": max_concurrency,
        "bakeSeconds": request.bakeSeconds,
        "autoRollback": request.autoRollback,
        "approvalTimeoutSeconds": request.approvalTimeoutSeconds or settings.approval_timeout_seconds,
        "pollSeconds": settings.job_poll_seconds,
        "waveSizes": [len(w) for w in waves],
        "healthCheck": request.healthCheck.model_dump(),
    }
    if request.strategy == "canary":
        parameters["canaryPercent"] = canary_percent
    if request.strategy == "batch":
        parameters["batchSize"] = batch_size
    if request.failureThreshold is not None:
        parameters["failureThreshold"] = request.failureThreshold.model_dump(exclude_none=True)
    if request.customerIds is not None:
        parameters["customerIds"] = request.customerIds
    if request.labels:
        parameters["labels"] = request.labels

    upgrade = repo.create_upgrade(
        component=request.component,
        from_version=current.most_common(1)[0][0] if current else None,
        to_version=request.version,
        strategy=request.strategy,
        parameters=parameters,
        metadata={"fromVersions": dict(current)},
        requested_by=requested_by,
        rows=rows,
        total_waves=len(waves),
        nonce=secrets.token_hex(4),
    )
    name = upgrade["execution_name"]
    try:
        workflow.start(name, {"upgradeId": upgrade["id"], "runName": name, "operation": "upgrade"})
    except Exception:
        repo.delete_upgrade(upgrade["id"])
        raise
    return DeployResponse(
        upgradeId=str(upgrade["id"]),
        jobId=name,
        strategy=request.strategy,
        message=_deploy_message(request.strategy, [len(w) for w in waves]),
        total=len(rows),
        waves=[len(w) for w in waves],
        status=upgrade["status"],
    )


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


def _deploy_message(strategy: str, sizes: list[int]) -> str:
    total = sum(sizes)
    noun = "customer" if total == 1 else "customers"
    if strategy == "canary":
        first = sizes[0]
        rest = f"; {total - first} more after /continue" if len(sizes) > 1 else ""
        return f"Canary upgrade started for {first} {'customer' if first == 1 else 'customers'}{rest}"
    if strategy == "batch":
        return f"Batch upgrade started for {total} {noun} in {len(sizes)} batches"
    return f"Upgrade started for all {total} {noun}"


def get_status(upgrade_id: int, *, repo: UpgradeRepository) -> StatusResponse:
    upgrade = _upgrade_or_404(repo, upgrade_id)
    counts = repo.upgrade_counts(upgrade_id)
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
            "only a canary upgrade whose canary wave has finished can be continued, once"
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
    workflow: WorkflowGateway,
) -> RollbackResponse:
    """Record a rollback of one customer and start its execution (helm rollback runs as a Job)."""
    _upgrade_or_404(repo, upgrade_id)
    row = repo.create_rollback(upgrade_id, customer_id, requested_by=requested_by)
    try:
        workflow.start(row["run_name"], {"upgradeId": upgrade_id, "runName": row["run_name"], "operation": "rollback"})
    except Exception:
        repo.delete_run(row["run_name"])
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


def abort_upgrade(
    upgrade_id: int,
    *,
    aborted_by: str | None,
    reason: str | None,
    rollback: bool,
    repo: UpgradeRepository,
    workflow: WorkflowGateway,
) -> AbortResponse:
    """Stop starting customers; running ones finish. With rollback, what was changed is undone after."""
    _upgrade_or_404(repo, upgrade_id)
    text = f"aborted by {aborted_by or 'unknown'}" + (f": {reason}" if reason else "")
    row = repo.request_abort(
        upgrade_id,
        text,
        aborted_by=aborted_by,
        rollback=rollback,
        fail_gate=lambda token: workflow.send_failure(token, "UpgradeAborted", text),
    )
    if row is None:
        current = repo.get_upgrade(upgrade_id) or {}
        raise WrongState(
            f"upgrade {upgrade_id} cannot be aborted: it is {current.get('status')}"
            + (" and already aborting" if str(current.get("halt_reason") or "").startswith("aborted") else "")
        )
    then = " then the customers it upgraded are rolled back" if rollback else ""
    return AbortResponse(
        message=f"Abort requested: no further customer starts; running ones finish{then}",
        upgradeId=str(upgrade_id),
        status=row["status"],
        haltReason=text,
        rollback=rollback,
    )


def rollback_upgrade(
    upgrade_id: int,
    *,
    requested_by: str | None,
    max_concurrency: int | None,
    repo: UpgradeRepository,
    workflow: WorkflowGateway,
    max_concurrency_cap: int | None = None,
) -> RollbackUpgradeResponse:
    """Roll every customer the upgrade changed back to its own from_version, last wave first."""
    concurrency_within_cap(max_concurrency, max_concurrency_cap)
    _upgrade_or_404(repo, upgrade_id)
    run_name = f"rollback-{upgrade_id}-all-{secrets.token_hex(4)}"
    rows = repo.create_upgrade_rollback(upgrade_id, requested_by=requested_by, run_name=run_name)
    if not rows:
        raise WrongState(f"upgrade {upgrade_id} has no upgraded customer left to roll back")
    request: dict[str, Any] = {"scope": "upgrade"}
    if max_concurrency:
        request["maxConcurrency"] = max_concurrency
    try:
        workflow.start(
            run_name,
            {"upgradeId": upgrade_id, "runName": run_name, "operation": "rollback", **request},
        )
    except Exception:
        repo.delete_run(run_name)
        raise
    sizes = Counter(r["wave"] for r in rows)
    return RollbackUpgradeResponse(
        message=f"Rollback of {len(rows)} customers started, last wave first",
        upgradeId=str(upgrade_id),
        jobId=run_name,
        customers=len(rows),
        waves=[sizes[w] for w in sorted(sizes)],
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
