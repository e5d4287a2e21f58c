"""Controlling an upgrade under way or ended: continue at a gate, abort, roll back (a customer or the whole
upgrade) and resume.
"""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

from upgrader.api.service.deploy import concurrency_within_cap
from upgrader.api.service.queries import upgrade_or_404
from upgrader.contract.base import from_record
from upgrader.contract.models import (
    AbortResponse,
    ContinueResponse,
    LeftOutCustomer,
    ResumeRequest,
    ResumeResponse,
    RollbackResponse,
    RollbackUpgradeResponse,
)
from upgrader.infra.errors import (
    LimitExceeded,
    WrongState,
)
from upgrader.infra.settings import Settings
from upgrader.infra.workflow import WorkflowGateway
from upgrader.rollout.compatibility import RuleRepository, refusal, violations_of_changes
from upgrader.rollout.planner import plan_limit_problems
from upgrader.rollout.reconciliation import ReconcileRepository, end_if_dead
from upgrader.rollout.resumes import ResumeRepository
from upgrader.rollout.rollbacks import RollbackRepository, RollbackTarget
from upgrader.rollout.run_repository import RunRepository
from upgrader.rollout.upgrade_repository import UpgradeRepository
from upgrader.rollout.windows import release_window_waits


def continue_upgrade(
    upgrade_id: int, *, continued_by: str | None, repo: UpgradeRepository, workflow: WorkflowGateway
) -> ContinueResponse:
    """Release the canary gate. Exactly one caller wins; the others get 409."""
    upgrade = upgrade_or_404(repo, upgrade_id)
    released = repo.release_gate(
        upgrade_id,
        continued_by,
        lambda token: workflow.send_continue(token, {"continuedBy": continued_by or "unknown"}),
    )
    if released is None:
        current = repo.get_upgrade(upgrade_id) or upgrade
        raise WrongState(
            f"upgrade {upgrade_id} is not awaiting continue (status: {current.status}); "
            "only a canary upgrade whose canary wave has finished (or a progressive one at a manual step gate) "
            "can be continued, once per gate"
        )
    return from_record(ContinueResponse, released, message="Upgrade continuation queued")


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
    made to the release since stay (see `upgrader.rollout.rollbacks`).
    """
    upgrade_or_404(repo, upgrade_id)
    if not force:
        _refuse_breaking_rollback(rollbacks.rollback_targets(upgrade_id, customer_id), rules=rules)
    row = rollbacks.create_rollback(upgrade_id, customer_id, requested_by=requested_by)
    try:
        workflow.start(row.run_name, {"upgradeId": upgrade_id, "runName": row.run_name, "operation": "rollback"})
    except Exception:
        rollbacks.delete_run(row.run_name)
        raise
    return from_record(RollbackResponse, row, message="Rollback started", upgrade_id=str(upgrade_id),
                       rollback_id=row.id, job_id=row.run_name)  # fmt: skip


def _refuse_breaking_rollback(rows: list[RollbackTarget], *, rules: RuleRepository) -> None:
    """A requested rollback that would break a compatibility rule is refused (422, nothing recorded)
    unless forced. Automatic rollbacks (autoRollback, abort with rollback) restore what was there and
    are not checked."""
    if not rows:
        return  # nothing to restore: the request's own checks answer (404, 409)
    touched = sorted({c for r in rows for c in r.changes})
    applicable = rules.rules(touched[0] if len(touched) == 1 else None)
    if not applicable:
        return
    versions = rules.customer_versions([r.customer_id for r in rows])
    found = [v for r in rows for v in violations_of_changes(applicable, r.customer_id, versions[r.customer_id],
                                                             r.changes)]  # fmt: skip
    if found:
        raise refusal(found, f"rolling {' + '.join(touched)} back", hint='send {"force": true} to roll back anyway')


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
    customer that had not taken its release's lease before (see `upgrader.rollout.leases`).
    """
    upgrade_or_404(repo, upgrade_id)
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
        current = repo.get_upgrade(upgrade_id)
        status, halt_reason = (current.status, current.halt_reason) if current else (None, None)
        raise WrongState(
            f"upgrade {upgrade_id} cannot be aborted: it is {status} and no rollback run of it is "
            "running" + (" (already aborting)" if str(halt_reason or "").startswith("aborted") else "")
        )
    row, runs = stopped
    for run in runs:  # an execution already gone (stopped in the console, failed): end its run now
        end_if_dead(run, executions=workflow, recon=recon, runs=run_steps)
    now = repo.get_upgrade(upgrade_id)
    status, halt_reason = (now.status, now.halt_reason) if now else (row.status, row.halt_reason)
    upgrade_aborted = str(halt_reason or "") == text
    then = " then the customers it upgraded are rolled back" if rollback and upgrade_aborted else ""
    what = "no further customer starts" if upgrade_aborted else "its rollback run starts no further customer"
    return AbortResponse(
        message=f"Abort requested: {what}; running ones finish{then}",
        upgrade_id=str(upgrade_id),
        status=status,
        halt_reason=text,
        rollback=rollback and upgrade_aborted,
        stopped_runs=[r.run_name for r in runs],
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
    upgrade_or_404(repo, upgrade_id)
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
    sizes = Counter(r.wave for r in rows)
    also = f"; {len(left_out)} left out (see leftOut)" if left_out else ""
    return RollbackUpgradeResponse(
        message=f"Rollback of {len(rows)} customers started, last wave first{also}",
        upgrade_id=str(upgrade_id),
        job_id=run_name,
        customers=len(rows),
        waves=[sizes[w] for w in sorted(sizes)],
        left_out=[LeftOutCustomer(customer_id=c.customer_id, reason=c.reason) for c in left_out],
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
    upgrade = upgrade_or_404(repo, upgrade_id)
    concurrency_within_cap(request.max_concurrency, settings.max_concurrency_cap)
    overrides = request.model_dump(exclude_none=True, exclude={"retry_failed"})
    parameters = {**upgrade.parameters, **overrides}
    problems = plan_limit_problems(
        upgrade.total_waves, upgrade.strategy, int(parameters.get("bakeSeconds", 0)),
        int(parameters.get("approvalTimeoutSeconds", settings.approval_timeout_seconds)),
        step_gate=parameters.get("stepGate"),
    )  # fmt: skip
    if problems:
        raise LimitExceeded("the resumed upgrade does not fit one execution: " + "; ".join(problems))
    row, resumed = resumes.resume(
        upgrade_id,
        parameters=overrides,
        retry_failed=request.retry_failed,
        requested_by=requested_by,
        nonce=secrets.token_hex(4),
        start=lambda name: workflow.start(name, {"upgradeId": upgrade_id, "runName": name, "operation": "upgrade"}),
    )
    attempt = len(repo.attempts(upgrade_id))
    return from_record(
        ResumeResponse, row, attempt=attempt, customers=resumed,
        message=f"Upgrade resumed for {resumed} {'customer' if resumed == 1 else 'customers'} (attempt {attempt})",
    )  # fmt: skip
