"""Resume: go on with a halted, aborted or failed upgrade, same upgrade id, a new execution.

Only the customers not yet done take part: those never started (skipped because of the halt or the
abort, or still pending) and, when asked, those that failed without their release being changed
(`retryFailed`; they get a new attempt, so a new Job name). Customers that completed, were rolled back,
or failed after changing their release are left as they are. Each resume is a new run (attempt 2, 3,
...), listed in the upgrade's status; its failure budget starts fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from upgrader.infra.db import Database, columns, select_returned
from upgrader.infra.errors import UpgradeAlreadyActive, WrongState
from upgrader.notifications import events
from upgrader.rollout.rollbacks import insert_run
from upgrader.rollout.upgrade_records import UpgradeRecord, lock_upgrade

RESUMABLE_STATUSES = ("halted", "aborted", "failed")


class ResumeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def resume(
        self,
        upgrade_id: int,
        *,
        parameters: dict[str, Any],
        retry_failed: bool,
        requested_by: str | None,
        nonce: str,
        start: Callable[[str], object],
    ) -> tuple[UpgradeRecord, int]:
        """Re-point the customers not yet done to a new run and start its execution before committing
        (a failed start leaves everything as it was). Returns (the upgrade, customers resumed)."""
        try:
            with self._db.transaction() as cur:
                upgrade = lock_upgrade(cur, upgrade_id, UpgradeRecord)
                if upgrade.status not in RESUMABLE_STATUSES:
                    raise WrongState(
                        f"upgrade {upgrade_id} is {upgrade.status}; only a halted, aborted or failed upgrade can "
                        "be resumed"
                    )
                cur.execute(
                    "SELECT run_name FROM upgrade_runs WHERE upgrade_id = %s AND status = 'running' LIMIT 1",
                    (upgrade_id,),
                )
                busy = cur.fetchone()
                if busy is not None:
                    # A halt or an abort lets the customers already started finish: their run ends after them.
                    # (Aborting it would not hurry it: a halted upgrade's run is already told to stop.)
                    raise WrongState(
                        f"run {busy['run_name']} of upgrade {upgrade_id} is still finishing the customers it had "
                        f"started; resume once it has ended (GET /api/upgrades/{upgrade_id} lists its runs)"
                    )
                cur.execute(
                    "SELECT COALESCE(max(attempt), 0) + 1 AS n FROM upgrade_runs WHERE upgrade_id = %s AND kind = 'upgrade'",
                    (upgrade_id,),
                )
                attempt = int((cur.fetchone() or {"n": 2})["n"])
                run_name = f"upgrade-{upgrade_id}-r{attempt}-{nonce}"
                cur.execute(
                    """
                    UPDATE customer_upgrade_logs u SET
                           -- a row that ran a Job before gets a new attempt, so new Job names
                           attempt = CASE WHEN u.job_name IS NOT NULL THEN u.attempt + 1 ELSE u.attempt END,
                           status = 'pending', run_name = %(run)s::text, error = NULL, started_at = NULL,
                           completed_at = NULL, waiting_for = NULL, job_name = NULL,
                           revision_before = NULL, revision_after = NULL, version_before = NULL,
                           version_after = NULL, updated_at = NOW(),
                           output = CASE WHEN u.output IS NULL THEN NULL
                                         ELSE concat_ws(E'\n', u.output, '--- resumed (run ' || %(run)s::text || ') ---') END
                     WHERE u.upgrade_id = %(id)s AND u.operation = 'upgrade'
                       AND u.left_out IS NULL  -- left out by the deploy (pinned, already at it): stays so
                       AND (u.status IN ('pending', 'skipped')
                            OR (%(retry)s AND u.status = 'failed'
                                AND (u.version_after IS NOT DISTINCT FROM u.version_before OR u.job_name IS NULL)))
                    RETURNING u.id
                    """,
                    {"run": run_name, "id": upgrade_id, "retry": retry_failed},
                )
                resumed = cur.fetchall()
                if not resumed:
                    what = "never started or failed without changing its release" if retry_failed else "never started"
                    raise WrongState(f"upgrade {upgrade_id} has no customer left that {what}; nothing to resume")
                row = select_returned(
                    cur, UpgradeRecord,
                    f"""
                    UPDATE system_upgrades u SET status = 'pending', halt_reason = NULL, completed_at = NULL,
                           task_token = NULL, gate = NULL, gate_until = NULL, execution_name = %s,
                           parameters = u.parameters || %s, updated_at = NOW(),
                           failed_customers = (SELECT count(*) FROM customer_upgrade_logs l
                                                WHERE l.upgrade_id = u.id AND l.operation = 'upgrade'
                                                  AND l.status IN ('failed', 'rolled_back'))
                     WHERE id = %s RETURNING {columns(UpgradeRecord)}
                    """,
                    (run_name, Jsonb(parameters), upgrade_id),
                )  # fmt: skip
                insert_run(cur, run_name, upgrade_id, "upgrade", "upgrade", requested_by, attempt=attempt)
                events.upgrade_event(
                    cur, events.UPGRADE_RESUMED, upgrade_id, f"resumed:{run_name}",
                    {"resume": {"runName": run_name, "attempt": attempt, "customers": len(resumed),
                                "retryFailed": retry_failed, "requestedBy": requested_by}},
                )  # fmt: skip
                start(run_name)
                return row, len(resumed)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "system_upgrades_one_active_per_component":
                raise UpgradeAlreadyActive(
                    f"another upgrade of this component is pending, running or awaiting continue; upgrade "
                    f"{upgrade_id} can be resumed once it has finished"
                ) from exc
            raise
