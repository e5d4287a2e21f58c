"""SQL of the state machine's parent steps. A run is one execution: an upgrade or a rollback; its customers'
steps are `customer_outcomes.CustomerOutcomes`, which the run repository also answers for.

Status changes are conditional UPDATEs and counters move in the same transaction as the row they
count, so a retried or duplicated call changes nothing the second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from upgrader.infra.db import Row, columns, one_row, select, select_one, select_returned
from upgrader.infra.vocabulary import ACTIVE_UPGRADE_STATUSES
from upgrader.notifications import events
from upgrader.rollout.customer_outcomes import CustomerOutcomes
from upgrader.rollout.failure_budget import WaveBudget
from upgrader.rollout.halts import halt
from upgrader.rollout.rollbacks import RollbackRepository
from upgrader.rollout.run_records import LogRecord, WaveMember
from upgrader.rollout.upgrade_records import UpgradeRecord, lock_upgrade

_UPGRADE = columns(UpgradeRecord)
_MEMBER = columns(WaveMember)

# waiting_for of a row whose child ended without recording while its helm Job may still run.
ORPHANED = "its worker ended without recording a result; the reconciler records its helm Job's outcome"


class RunRepository(CustomerOutcomes):
    """SQL of the state machine's steps. A run is one execution: an upgrade or a rollback."""

    def start_run(self, upgrade_id: int, run_name: str, operation: str) -> tuple[UpgradeRecord, list[WaveMember]]:
        """Mark the upgrade started (once) and return it with the run's rows in wave order."""
        with self._db.transaction() as cur:
            upgrade = lock_upgrade(cur, upgrade_id, UpgradeRecord)
            if operation == "upgrade":
                started = select_one(
                    cur, UpgradeRecord,
                    f"""
                    UPDATE system_upgrades SET status = 'in_progress', started_at = COALESCE(started_at, NOW()),
                           current_wave = COALESCE(current_wave, 0), updated_at = NOW()
                     WHERE id = %s AND status = 'pending' RETURNING {_UPGRADE}
                    """,
                    (upgrade_id,),
                )  # fmt: skip
                if started is not None:
                    upgrade = started
                    events.upgrade_event(cur, events.UPGRADE_STARTED, upgrade_id, f"upgrade-started:{run_name}",
                                         {"run": {"runName": run_name}})  # fmt: skip
            members = select(
                cur, WaveMember, f"SELECT {_MEMBER} FROM customer_upgrade_logs WHERE run_name = %s ORDER BY wave, id",
                (run_name,),
            )  # fmt: skip
            return upgrade, members

    def run_size(self, run_name: str) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM customer_upgrade_logs WHERE run_name = %s", (run_name,))
            return int(one_row(cur)["n"])

    def wave_rows(self, run_name: str, wave: int) -> list[WaveMember]:
        """The run's customers of one wave (the items of its manifest), in order."""
        with self._db.transaction() as cur:
            return select(
                cur, WaveMember,
                f"SELECT {_MEMBER} FROM customer_upgrade_logs WHERE run_name = %s AND wave = %s ORDER BY id",
                (run_name, wave),
            )  # fmt: skip

    def total_waves(self, upgrade_id: int) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT total_waves FROM system_upgrades WHERE id = %s", (upgrade_id,))
            row = cur.fetchone()
            return int(row["total_waves"]) if row else 0

    def stop_reason(self, run_name: str) -> str | None:
        with self._db.transaction() as cur:
            cur.execute("SELECT stop_reason, scope, wave FROM upgrade_runs WHERE run_name = %s", (run_name,))
            row = cur.fetchone()
            return row["stop_reason"] if row else None

    def wave_counts(self, run_name: str, wave: int) -> dict[str, int]:
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT status, count(*) AS n FROM customer_upgrade_logs
                 WHERE run_name = %s AND wave = %s GROUP BY status
                """,
                (run_name, wave),
            )
            return {r["status"]: int(r["n"]) for r in cur.fetchall()}

    def close_unfinished(self, run_name: str, wave: int | None, reason: str, *, wave_over: bool = True) -> int:
        """Rows a wave (or a slice of it) left in_progress (a child that could not record its result) end
        as failed. With a wave that is over (`wave_over`: none of its customers waits for its window any
        more), its Wave Finished event is written in the same transaction (see `wave_over`).

        A row still holding its release's lease may have a helm Job running: it is not guessed at but
        left for the reconciler, which records that Job's real outcome once it ends (ORPHANED).
        """
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE customer_upgrade_logs l SET waiting_for = %s, updated_at = NOW()
                 WHERE l.run_name = %s AND (%s::int IS NULL OR l.wave = %s) AND l.status = 'in_progress'
                   AND EXISTS (SELECT 1 FROM customer_leases c WHERE c.log_id = l.id)
                """,
                (ORPHANED, run_name, wave, wave),
            )
            cur.execute(
                """
                UPDATE customer_upgrade_logs l SET status = 'failed', completed_at = NOW(),
                       error = COALESCE(error, %s), updated_at = NOW(), waiting_for = NULL
                 WHERE l.run_name = %s AND (%s::int IS NULL OR l.wave = %s) AND l.status = 'in_progress'
                   AND NOT EXISTS (SELECT 1 FROM customer_leases c WHERE c.log_id = l.id)
                RETURNING id, upgrade_id, operation, status, run_name, attempt
                """,
                (reason, run_name, wave, wave),
            )
            closed = cur.fetchall()
            _count(cur, [r for r in closed if r["operation"] == "upgrade"], "failed")
            for row in closed:
                events.customer_outcome(cur, row)
            if wave is not None and wave_over:
                _wave_finished(cur, run_name, wave)
            return len(closed)

    def wave_over(self, run_name: str, wave: int) -> None:
        """A wave whose customers still wait for their windows is over after all (its run halted): its
        counts and failure budget (Wave Finished, once)."""
        with self._db.transaction() as cur:
            _wave_finished(cur, run_name, wave)

    def halt(self, upgrade_id: int, reason: str) -> bool:
        """Ask every customer not yet started to stay untouched. First reason wins.

        EvaluateWave's halt: its wave's Map has ended with every child (a failed Map Run stops them) and
        the run is not in a window wait, so no token is taken (`finish_customer` is the halt that ends
        a run's window wait)."""
        with self._db.transaction() as cur:
            return halt(cur, upgrade_id, reason)

    def halt_reason(self, upgrade_id: int) -> str | None:
        with self._db.transaction() as cur:
            cur.execute("SELECT halt_reason FROM system_upgrades WHERE id = %s", (upgrade_id,))
            row = cur.fetchone()
            return row["halt_reason"] if row else None

    def store_task_token(self, upgrade_id: int, token: str, wave: int, *, gate: str = "approval",
                         seconds: int | None = None) -> bool:  # fmt: skip
        """A gate opens: keep the token so /continue (approval) or /abort (either) can release it.

        approval: the canary waits for /continue (status awaiting_continue). bake: a timed wait between
        waves; the status stays in_progress and `gate_until` says when the bake ends.
        """
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE system_upgrades SET task_token = %(token)s, current_wave = %(wave)s, gate = %(gate)s::text,
                       gate_until = CASE WHEN %(seconds)s::int IS NULL THEN NULL
                                         ELSE NOW() + make_interval(secs => %(seconds)s::int) END,
                       status = CASE WHEN %(gate)s::text = 'approval' THEN 'awaiting_continue' ELSE status END,
                       updated_at = NOW()
                 WHERE id = %(id)s AND status IN ('in_progress', 'awaiting_continue') AND halt_reason IS NULL
                RETURNING id, execution_name
                """,
                {"token": token, "wave": wave, "gate": gate, "seconds": seconds, "id": upgrade_id},
            )
            opened = cur.fetchone()
            if opened is None:
                return False
            events.upgrade_event(
                cur, events.GATE_WAITING, upgrade_id, f"gate:{opened['execution_name']}:{wave}:{gate}",
                {"gate": {"kind": gate, "wave": wave, "seconds": seconds,
                          "continueCommand": events.continue_command(upgrade_id) if gate == "approval" else None,
                          "abortCommand": events.abort_command(upgrade_id)}},
                severity="attention" if gate == "approval" else "info",
            )  # fmt: skip
            return True

    def set_current_wave(self, upgrade_id: int, wave: int) -> None:
        """The next wave starts: any bake before it is over."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE system_upgrades SET current_wave = GREATEST(current_wave, %s), updated_at = NOW(),
                       task_token = CASE WHEN gate = 'bake' THEN NULL ELSE task_token END,
                       gate_until = CASE WHEN gate = 'bake' THEN NULL ELSE gate_until END,
                       gate = CASE WHEN gate = 'bake' THEN NULL ELSE gate END
                 WHERE id = %s RETURNING execution_name
                """,
                (wave, upgrade_id),
            )
            current = cur.fetchone()
            if current is None:
                return
            cur.execute(
                "SELECT count(*) AS n FROM customer_upgrade_logs WHERE run_name = %s AND wave = %s",
                (current["execution_name"], wave),
            )
            size = int(one_row(cur)["n"])
            events.upgrade_event(cur, events.WAVE_STARTED, upgrade_id,
                                 f"wave-started:{current['execution_name']}:{wave}", {"wave": {"wave": wave, "size": size}})  # fmt: skip

    def finalize_upgrade(self, upgrade_id: int, run_name: str, failure: str | None) -> UpgradeRecord:
        """Skip what never started, then set the final status once (a retry changes nothing)."""
        with self._db.transaction() as cur:
            upgrade = lock_upgrade(cur, upgrade_id, UpgradeRecord)
            if upgrade.status not in ACTIVE_UPGRADE_STATUSES:
                _end_run(cur, run_name, upgrade.status)
                return upgrade
            halt_reason = upgrade.halt_reason
            reason = halt_reason or failure
            # Customers told of the change that this run will not start now (a halt or an abort told them
            # already; a failure of the run, such as the canary's approval timing out, tells them here).
            events.cancel_notices(cur, upgrade_id, reason or "its run ended before it started", run_name=run_name)
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET status = 'skipped', completed_at = NOW(), updated_at = NOW(),
                       error = %s
                 WHERE run_name = %s AND status = 'pending'
                """,
                (f"not started: {reason}" if reason else "not started", run_name),
            )
            # Every attempt counts (a resumed upgrade's earlier runs included).
            cur.execute(
                """
                SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
                       count(*) FILTER (WHERE status IN ('failed', 'rolled_back')) AS failed
                  FROM customer_upgrade_logs WHERE upgrade_id = %s AND operation = 'upgrade'
                """,
                (upgrade_id,),
            )
            counts = one_row(cur)
            if halt_reason and halt_reason.startswith("aborted"):
                final = "aborted"
            elif halt_reason:
                final = "halted"
            elif failure and counts["completed"] == 0:
                final = "failed"
            elif failure:
                final = "halted"
            elif counts["failed"] == 0:
                final = "completed"
            elif counts["completed"] == 0:
                final = "failed"
            else:
                final = "completed_with_failures"
            finished = select_returned(
                cur, UpgradeRecord,
                f"""
                UPDATE system_upgrades SET status = %s, completed_at = NOW(), task_token = NULL, gate = NULL,
                       gate_until = NULL, halt_reason = COALESCE(halt_reason, %s), updated_at = NOW()
                 WHERE id = %s RETURNING {_UPGRADE}
                """,
                (final, failure, upgrade_id),
            )  # fmt: skip
            _end_run(cur, run_name, final)
            events.upgrade_event(
                cur, events.UPGRADE_FINISHED, upgrade_id, f"finished:{run_name}",
                {"run": {"runName": run_name, "failure": failure}},
                severity="info" if final in ("completed", "aborted") else "attention",
            )  # fmt: skip
            return finished

    def finalize_rollback(self, upgrade_id: int, run_name: str, whole_upgrade: bool) -> dict[str, int]:
        """Counts of a rollback run; a whole-upgrade rollback also sets the upgrade's final status.

        Rows the run never started are closed as skipped, so they do not block a later rollback.
        """
        with self._db.transaction() as cur:
            # Lock order as everywhere: the upgrade's row first, then its run's (see `upgrader.rollout.leases`).
            cur.execute("SELECT id FROM system_upgrades WHERE id = %s FOR NO KEY UPDATE", (upgrade_id,))
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET status = 'skipped', completed_at = NOW(), updated_at = NOW(),
                       error = 'not started: the rollback run ended first'
                 WHERE run_name = %s AND status = 'pending'
                """,
                (run_name,),
            )
            cur.execute(
                """
                SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
                       count(*) FILTER (WHERE status = 'skipped' AND error LIKE 'nothing to roll back%%') AS noop,
                       count(*) FILTER (WHERE status <> 'completed'
                                          AND NOT (status = 'skipped' AND error LIKE 'nothing to roll back%%'))
                           AS failed
                  FROM customer_upgrade_logs WHERE run_name = %s
                """,
                (run_name,),
            )
            counts = one_row(cur)
            cur.execute("SELECT stop_reason, scope, wave FROM upgrade_runs WHERE run_name = %s", (run_name,))
            run = cur.fetchone() or {}
            _end_run(
                cur, run_name,
                "stopped" if run.get("stop_reason") else "completed" if counts["failed"] == 0 else "incomplete",
            )  # fmt: skip
            if whole_upgrade:
                cur.execute(
                    """
                    UPDATE system_upgrades SET status = %s, updated_at = NOW()
                     WHERE id = %s AND status <> ALL(%s)
                    """,
                    (
                        "rolled_back" if counts["failed"] == 0 else "rollback_incomplete",
                        upgrade_id,
                        list(ACTIVE_UPGRADE_STATUSES),
                    ),
                )
            events.upgrade_event(
                cur, events.ROLLBACK_FINISHED, upgrade_id, f"rollback-finished:{run_name}",
                {"run": {"runName": run_name, "wholeUpgrade": whole_upgrade, "completed": int(counts["completed"]),
                         "failed": int(counts["failed"]), "scope": run.get("scope"), "wave": run.get("wave")}},
                severity="info" if counts["failed"] == 0 else "attention",
            )  # fmt: skip
            return {"completed": int(counts["completed"]), "failed": int(counts["failed"])}

    def create_abort_rollback(
        self, upgrade_id: int, *, requested_by: str | None, run_name: str, wave: int | None = None
    ) -> list[LogRecord]:
        """The rollback an abort with rollback asked for, run by the same execution; with `wave`, of only that
        wave's customers (scope "wave": the analysis gate failed it, the waves that passed are kept)."""
        rows, _ = RollbackRepository(self._db).create_upgrade_rollback(
            upgrade_id, requested_by=requested_by, run_name=run_name, scope="abort" if wave is None else "wave",
            wave=wave,
        )  # fmt: skip
        return rows


def _end_run(cur: psycopg.Cursor[Row], run_name: str, status: str) -> None:
    cur.execute(
        """
        UPDATE upgrade_runs SET status = %s, ended_at = COALESCE(ended_at, NOW()), updated_at = NOW()
         WHERE run_name = %s AND status = 'running'
        """,
        (status, run_name),
    )


def _count(cur: psycopg.Cursor[Row], rows: Sequence[Row], status: str) -> None:
    """Move the upgrade's counter for rows that just reached a final status (same transaction)."""
    # A customer rolled back after a failed upgrade counts as failed (the spec has two counters).
    column = {"completed": "completed_customers", "failed": "failed_customers", "rolled_back": "failed_customers"}.get(
        status
    )
    if column is None:
        return
    for upgrade_id, n in Counter(r["upgrade_id"] for r in rows).items():
        cur.execute(
            sql.SQL("UPDATE system_upgrades SET {col} = {col} + %s, updated_at = NOW() WHERE id = %s").format(
                col=sql.Identifier(column)
            ),
            (n, upgrade_id),
        )


def _wave_finished(cur: psycopg.Cursor[Row], run_name: str, wave: int) -> None:
    """A wave of a run is over (EvaluateWave closed what it left open): its counts and failure budget."""
    cur.execute(
        """
        SELECT r.upgrade_id, r.kind, u.strategy, u.parameters,
               count(l.id) AS size,
               count(l.id) FILTER (WHERE l.status = 'completed') AS completed,
               count(l.id) FILTER (WHERE l.status IN ('failed', 'rolled_back')) AS failed,
               count(l.id) FILTER (WHERE l.status = 'skipped') AS skipped
          FROM upgrade_runs r JOIN system_upgrades u ON u.id = r.upgrade_id
          LEFT JOIN customer_upgrade_logs l ON l.run_name = r.run_name AND l.wave = %s
         WHERE r.run_name = %s
         GROUP BY r.upgrade_id, r.kind, u.strategy, u.parameters
        """,
        (wave, run_name),
    )
    found = cur.fetchone()
    if found is None:
        return
    size, failed = int(found["size"]), int(found["failed"])
    detail: dict[str, Any] = {"wave": wave, "runName": run_name, "operation": found["kind"], "size": size,
                              "completed": int(found["completed"]), "failed": failed,
                              "skipped": int(found["skipped"]), "budget": None}  # fmt: skip
    severity: events.Severity = "info"
    if found["kind"] == "upgrade":
        budget = WaveBudget(found["strategy"], wave, size, failed, (found["parameters"] or {}).get("failureThreshold"))
        detail["budget"] = budget.as_event()
        if detail["budget"]["consumed"] >= 0.5:
            severity = "attention"
    events.upgrade_event(cur, events.WAVE_FINISHED, int(found["upgrade_id"]), f"wave-finished:{run_name}:{wave}",
                         {"wave": detail}, severity=severity)  # fmt: skip
