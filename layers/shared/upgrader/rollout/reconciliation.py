"""Nothing ever stuck: finish runs whose execution ended without our code finishing them.

An execution can end with no step of ours running: a Stop in the console, a `States.Runtime` error,
the 25,000-event history limit, FinalizeRun exhausting its retries while the database restarts.
Two triggers call the same code: an EventBridge rule on the state machine's execution status changes
(FAILED, TIMED_OUT, ABORTED) and a scheduled sweep over the runs the database still calls running (in
case an event is lost). For such a run:

- customers never started (pending, or claimed but without the release's lease) are `skipped`, with
  the execution's error and cause as the reason;
- a customer holding its release's lease may have a helm Job running: it is not guessed at. The
  sweep looks at its Job and, once the Job has ended, records the Job's real outcome (and what the
  release holds) against the row's own run and gives the lease back (a resumed run goes on unaffected);
- customers told of the change that the run will now not start are told it is cancelled;
- the upgrade (or the rollback run) gets its final status, so a new deploy of that component, an
  abort or a rollback are accepted again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from upgrader.cluster.types import JobState, ReleaseInfo
from upgrader.infra.db import Database, columns, select, select_one
from upgrader.infra.errors import NotFound
from upgrader.infra.redaction import Redactor
from upgrader.notifications import events
from upgrader.rollout.halts import WindowRelease
from upgrader.rollout.helm_output import HelmOutputStore
from upgrader.rollout.run_records import LogRecord, RunRecord
from upgrader.rollout.run_repository import ORPHANED, RunRepository

_RUN = columns(RunRecord)

TERMINAL_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
_JOB_OPERATION = re.compile(r"^helm-(upgrade|restore|rollback|recover|slot|switch|finalize)-")


class ExecutionStatus(Protocol):
    def execution_status(self, name: str) -> dict[str, Any]: ...


class JobReader(Protocol):
    """What the reconciler needs of the cluster port (`ClusterGateway` has it)."""

    def get_helm_job_named(self, name: str) -> JobState: ...

    def release_status(self, namespace: str, release: str) -> ReleaseInfo: ...


@dataclass
class ReconcileResult:
    reconciled: list[str] = field(default_factory=list)  # runs ended here
    settled: list[int] = field(default_factory=list)  # log rows whose Job outcome was recorded here
    still_running: list[int] = field(default_factory=list)  # log rows whose Job still runs
    expired_outputs: int = 0  # full helm outputs deleted by this sweep (retention)

    def as_dict(self) -> dict[str, Any]:
        expired = {"expiredOutputs": self.expired_outputs} if self.expired_outputs else {}
        return {"reconciled": self.reconciled, "settled": self.settled, "stillRunning": self.still_running, **expired}


class ReconcileRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def running_runs(self, *, min_age_seconds: int = 0, execution_name: str | None = None) -> list[RunRecord]:
        with self._db.transaction() as cur:
            return select(
                cur, RunRecord,
                f"""
                SELECT {_RUN} FROM upgrade_runs
                 WHERE status = 'running' AND created_at <= NOW() - make_interval(secs => %s::int)
                   AND (%s::text IS NULL OR execution_name = %s)
                 ORDER BY created_at
                """,
                (min_age_seconds, execution_name, execution_name),
            )  # fmt: skip

    def close_dead_run(self, run_name: str, reason: str) -> RunRecord | None:
        """End a run whose execution is gone: skip what never started, keep leased rows for their Jobs."""
        with self._db.transaction() as cur:
            run = select_one(cur, RunRecord, f"SELECT {_RUN} FROM upgrade_runs WHERE run_name = %s FOR UPDATE",
                             (run_name,))  # fmt: skip
            if run is None or run.status != "running":
                return None
            # Customers told of the change that this run will now not start (those holding a lease go on).
            events.cancel_notices(cur, run.upgrade_id, reason, run_name=run_name)
            cur.execute(
                """
                UPDATE customer_upgrade_logs l SET status = 'skipped', completed_at = NOW(), updated_at = NOW(),
                       started_at = COALESCE(started_at, NOW()), waiting_for = NULL, error = %s,
                       window_opens_at = NULL, window_token = NULL
                 WHERE l.run_name = %s AND l.status IN ('pending', 'in_progress')
                   AND NOT EXISTS (SELECT 1 FROM customer_leases c WHERE c.log_id = l.id)
                """,
                (f"not started: {reason}", run_name),
            )
            cur.execute(
                """
                UPDATE customer_upgrade_logs l SET waiting_for = %s, updated_at = NOW()
                 WHERE l.run_name = %s AND l.status = 'in_progress'
                """,
                (ORPHANED, run_name),
            )
            ended = select_one(
                cur, RunRecord,
                f"""
                UPDATE upgrade_runs SET status = 'reconciled', end_reason = %s, ended_at = NOW(), updated_at = NOW(),
                       stop_reason = COALESCE(stop_reason, %s)
                 WHERE run_name = %s RETURNING {_RUN}
                """,
                (reason, reason, run_name),
            )  # fmt: skip
            if ended is not None:
                events.upgrade_event(cur, events.RUN_RECONCILED, ended.upgrade_id, f"reconciled:{run_name}",
                                     {"run": {"runName": run_name, "kind": ended.kind, "reason": reason}})  # fmt: skip
            return ended

    def orphaned_rows(self) -> list[LogRecord]:
        """Rows holding a lease that no worker will record: their run ended, or their worker did."""
        with self._db.transaction() as cur:
            return select(
                cur, LogRecord,
                f"""
                SELECT {columns(LogRecord, "l")} FROM customer_leases c
                  JOIN customer_upgrade_logs l ON l.id = c.log_id
                  LEFT JOIN upgrade_runs r ON r.run_name = l.run_name
                 WHERE l.status NOT IN ('pending', 'in_progress') OR l.waiting_for = %s
                    OR COALESCE(r.status, 'ended') <> 'running'
                 ORDER BY l.id
                """,
                (ORPHANED,),
            )  # fmt: skip

    def give_back_lease(self, log_id: int) -> None:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM customer_leases WHERE log_id = %s", (log_id,))

    def refresh_final_status(self, upgrade_id: int) -> None:
        """A late outcome arrived for an upgrade that already ended: its final status follows the counts."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE system_upgrades SET updated_at = NOW(),
                       status = CASE WHEN failed_customers = 0 THEN 'completed'
                                     WHEN completed_customers = 0 THEN 'failed'
                                     ELSE 'completed_with_failures' END
                 WHERE id = %s AND status IN ('completed', 'completed_with_failures', 'failed')
                   AND halt_reason IS NULL
                """,
                (upgrade_id,),
            )


def execution_reason(name: str, status: str, error: str | None, cause: str | None) -> str:
    detail = ": ".join(part for part in (error, (cause or "")[:500]) if part)
    return f"execution {name} ended {status}" + (f" ({detail})" if detail else "")


def reconcile_execution(
    name: str, status: str, error: str | None, cause: str | None, *,
    recon: ReconcileRepository, runs: RunRepository, cluster: JobReader | None,
    release_windows: WindowRelease | None = None, outputs: HelmOutputStore | None = None,
) -> ReconcileResult:  # fmt: skip
    """An execution ended FAILED, TIMED_OUT or ABORTED: end every run it was running."""
    result = ReconcileResult()
    if status in TERMINAL_STATUSES:
        reason = execution_reason(name, status, error, cause)
        for run in recon.running_runs(execution_name=name):
            if _end_run(run, reason, recon=recon, runs=runs):
                result.reconciled.append(run.run_name)
    if cluster is not None:
        settle_orphans(recon=recon, runs=runs, cluster=cluster, result=result, release_windows=release_windows,
                       outputs=outputs)  # fmt: skip
    return result


def sweep(
    *, recon: ReconcileRepository, runs: RunRepository, executions: ExecutionStatus, cluster: JobReader | None,
    min_age_seconds: int = 60, release_windows: WindowRelease | None = None, outputs: HelmOutputStore | None = None,
    output_retention_days: int | None = None,
) -> ReconcileResult:  # fmt: skip
    """Every run the database calls running whose execution is not RUNNING (an event was lost), then
    every lease nobody will give back. `min_age_seconds` spares a run whose execution is being started.
    With `output_retention_days`, full helm outputs older than that are deleted (a bounded batch)."""
    result = ReconcileResult()
    for run in recon.running_runs(min_age_seconds=min_age_seconds):
        if end_if_dead(run, executions=executions, recon=recon, runs=runs):
            result.reconciled.append(run.run_name)
    if cluster is not None:
        settle_orphans(recon=recon, runs=runs, cluster=cluster, result=result, release_windows=release_windows,
                       outputs=outputs)  # fmt: skip
    if outputs is not None and output_retention_days is not None:
        result.expired_outputs = outputs.expire(output_retention_days)
    return result


def end_if_dead(
    run: RunRecord, *, executions: ExecutionStatus, recon: ReconcileRepository, runs: RunRepository
) -> bool:
    """End the run when its execution is no longer RUNNING (or does not exist). True when ended here."""
    try:
        described = executions.execution_status(run.execution_name)
    except NotFound:
        described = {"status": "MISSING", "error": "ExecutionDoesNotExist", "cause": "no such execution"}
    if described.get("status") == "RUNNING":
        return False
    reason = execution_reason(run.execution_name, str(described.get("status")), described.get("error"),
                              described.get("cause"))  # fmt: skip
    return _end_run(run, reason, recon=recon, runs=runs)


def _end_run(run: RunRecord, reason: str, *, recon: ReconcileRepository, runs: RunRepository) -> bool:
    closed = recon.close_dead_run(run.run_name, reason)
    if closed is None:
        return False
    if run.kind == "upgrade":
        runs.finalize_upgrade(run.upgrade_id, run.run_name, reason)
    else:
        runs.finalize_rollback(run.upgrade_id, run.run_name, whole_upgrade=run.scope in ("upgrade", "abort"))
    return True


def settle_orphans(
    *, recon: ReconcileRepository, runs: RunRepository, cluster: JobReader, result: ReconcileResult,
    release_windows: WindowRelease | None = None, outputs: HelmOutputStore | None = None,
) -> None:  # fmt: skip
    """Record the real outcome of every leased row no worker will record, once its Job has ended.

    An orphan recorded failed can put its wave over its failure budget while the run goes on (with a
    later wave, or waiting for its customers' maintenance windows): the upgrade halts then, and a run's
    window wait ends at once through `release_windows` (see `RunRepository.finish_customer`).
    The orphan of a run that has ended (reconciled, then maybe resumed) is recorded against that run and
    halts nothing: a resumed run's failure budget is its own."""
    for row in recon.orphaned_rows():
        log_id = row.id
        if row.status not in ("pending", "in_progress"):  # final already: only the lease was left over
            recon.give_back_lease(log_id)
            continue
        name = row.job_name
        if not name:
            runs.finish_customer(log_id, "skipped", None, "not started: its run ended before helm", None)
            result.settled.append(log_id)
            continue
        state = cluster.get_helm_job_named(name)
        if state.phase in ("pending", "running"):
            result.still_running.append(log_id)
            continue
        release = cluster.release_status(row.namespace, row.release_name)
        match = _JOB_OPERATION.match(name)
        operation = match.group(1) if match else "upgrade"
        note = "recorded by the reconciler: its worker or execution ended before the Job did"
        status, error = _outcome(row.operation, operation, state.phase == "succeeded", state.error, release.revision)
        if row.operation == "upgrade" and status == "completed":
            note += "; the health check did not run"
        if status == "failed" and release.stuck:
            error = (f"{error}; the release is {release.status} (revision {release.revision}): the next "
                     "operation's pre-check recovers it")  # fmt: skip
        if state.phase == "missing":
            error = f"Job {name} is gone before its outcome was read; the release holds revision {release.revision}"
            status = "failed"
        redactor = Redactor(release.secrets)
        if state.output and outputs is not None:  # written by this worker, redacted, like check_helm_job does
            outputs.record(log_id, name, stage=operation, phase=state.phase, output=str(redactor.text(state.output)),
                           header=None)  # fmt: skip
        changed, _ = runs.finish_customer(log_id, status, f"--- {note} ---", redactor.text(error),
                                          release.snapshot() if release.exists else None,
                                          release_windows=release_windows)  # fmt: skip
        if changed:
            result.settled.append(log_id)
            recon.refresh_final_status(row.upgrade_id)


def _outcome(row_operation: str, operation: str, succeeded: bool, error: str | None,
             revision: int | None) -> tuple[str, str | None]:  # fmt: skip
    """(status, error) of a row (of `row_operation`: upgrade or rollback) from the last Job it ran."""
    failed = error or "helm Job failed"
    if row_operation == "upgrade":
        if operation == "upgrade":
            return ("completed", None) if succeeded else ("failed", failed)
        if operation == "slot":  # blue-green: never switched to, the active slot kept serving
            return "failed", ("the new version is on the idle slot but its run ended before the switch; nothing "
                              "switched" if succeeded else f"{failed}; nothing switched")  # fmt: skip
        if operation == "switch":
            return ("completed", None) if succeeded else ("failed", f"{failed}; the switch did not happen")
        if operation == "finalize":  # switched already: the upgrade is done, the old slot maybe not removed
            return ("completed", None if succeeded else f"switched; removing the old slot failed: {failed}")
        if operation == "recover":
            if succeeded:
                return "skipped", "release recovered; not upgraded: its run ended"
            return "failed", f"could not recover the stuck release: {failed}"
        # an automatic rollback, or a recovery after a killed upgrade: the upgrade did not stick
        after = f"rolled back to revision {revision}" if succeeded else f"rollback failed: {failed}"
        return "failed", f"the upgrade did not complete; {after}"
    if operation in ("rollback", "restore", "switch"):
        return ("completed", None) if succeeded else ("failed", failed)
    return "failed", "the rollback did not complete" + ("" if succeeded else f": {failed}")
