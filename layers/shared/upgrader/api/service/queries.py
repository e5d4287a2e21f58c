"""The API's reads: an upgrade's status and customer rows, the list of upgrades, the queue and one execution."""

from __future__ import annotations

import json
from typing import Any

from upgrader.analysis.repository import AnalysisRepository
from upgrader.api.service.analysis import analysis_state
from upgrader.contract.base import from_record
from upgrader.contract.image_models import MovedTagView
from upgrader.contract.models import (
    Attempt,
    LogsResponse,
    QueueJobResponse,
    QueueStatsResponse,
    StatusResponse,
    UpgradeListResponse,
    UpgradeSummary,
    WindowWait,
)
from upgrader.infra.errors import (
    UpgradeNotFound,
)
from upgrader.infra.workflow import WorkflowGateway, epoch_ms
from upgrader.rollout.image_recheck import ImageMoveRepository
from upgrader.rollout.upgrade_records import UpgradeRecord
from upgrader.rollout.upgrade_repository import UpgradeRepository
from upgrader.rollout.windows import WindowRepository


def get_status(
    upgrade_id: int, *, repo: UpgradeRepository, windows: WindowRepository, analysis: AnalysisRepository | None = None,
    moves: ImageMoveRepository | None = None,
) -> StatusResponse:  # fmt: skip
    """The upgrade's figures, all read from one snapshot: a customer that moves meanwhile (deferred to its
    window, claimed, finished) is counted once, where the lists say it is."""
    with repo.snapshot():
        status = _status(upgrade_id, repo=repo, windows=windows)
        if moves is not None:
            status.moved_tags = [from_record(MovedTagView, m, pinned_digest_present=m.pinned_present)
                                 for m in moves.moved(upgrade_id)]  # fmt: skip
    if analysis is not None:
        status.analysis = analysis_state(upgrade_id, analysis)
    return status


def _status(upgrade_id: int, *, repo: UpgradeRepository, windows: WindowRepository) -> StatusResponse:
    upgrade = upgrade_or_404(repo, upgrade_id)
    counts = repo.upgrade_counts(upgrade_id)
    return from_record(
        StatusResponse,
        upgrade,
        completed=counts.get("completed", 0),
        failed=counts.get("failed", 0) + counts.get("rolled_back", 0),
        in_progress=counts.get("in_progress", 0),
        pending=counts.get("pending", 0),
        skipped=counts.get("skipped", 0),
        rolled_back=counts.get("rolled_back", 0) + counts.get("rolled_back_by_request", 0),
        awaiting_continue=upgrade.status == "awaiting_continue",
        waiting_for_lease=counts.get("waiting_for_lease", 0),
        attempts=[from_record(Attempt, a) for a in repo.attempts(upgrade_id)],
        left_out={k.removeprefix("left_out:"): n for k, n in counts.items() if k.startswith("left_out:")},
        waiting_for_window=[from_record(WindowWait, w) for w in windows.waiting(upgrade_id)],
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
    upgrade_or_404(repo, upgrade_id)
    total, rows = repo.list_logs(
        upgrade_id, status=status, operation=operation, customer_id=customer_id, limit=limit, offset=offset
    )
    entries = rows
    next_offset = offset + len(entries) if offset + len(entries) < total else None
    return LogsResponse(
        upgrade_id=str(upgrade_id),
        count=len(entries),
        total=total,
        limit=limit,
        offset=offset,
        next_offset=next_offset,
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
    summaries = [from_record(UpgradeSummary, r) for r in rows]
    next_before = summaries[-1].upgrade_id if len(summaries) == limit else None
    return UpgradeListResponse(count=len(summaries), upgrades=summaries, next_before=next_before)


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
        awaiting_continue=db["awaiting"],
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
        failed_reason=(f"{execution.get('error', '')}: {execution.get('cause', '')}".strip(": ") if failed else None),
        timestamp=epoch_ms(execution.get("startDate")),
        processed_on=epoch_ms(execution.get("startDate")),
        finished_on=epoch_ms(execution.get("stopDate")),
        execution_arn=execution["executionArn"],
        map_runs=[
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


def upgrade_or_404(repo: UpgradeRepository, upgrade_id: int) -> UpgradeRecord:
    upgrade = repo.get_upgrade(upgrade_id)
    if upgrade is None:
        raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
    return upgrade
