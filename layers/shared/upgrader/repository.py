"""Every SQL statement of the product. Parameterized always; each public method is one transaction.

Status changes are conditional UPDATEs and counters move in the same transaction as the row they
count, so a retried or duplicated call changes nothing the second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from upgrader import events
from upgrader.db import Database, Row
from upgrader.errors import LogRowNotFound, UpgradeAlreadyActive, UpgradeNotFound
from upgrader.leases import STOP_GATE, budget_reason
from upgrader.planner import tolerated_failures
from upgrader.redaction import redact
from upgrader.rollbacks import RollbackRepository, insert_run
from upgrader.vocabulary import ACTIVE_UPGRADE_STATUSES

FINAL_LOG_STATUSES = ("completed", "failed", "skipped", "rolled_back")
# waiting_for of a row whose child ended without recording while its helm Job may still run.
ORPHANED = "its worker ended without recording a result; the reconciler records its helm Job's outcome"
# Ends the maintenance-window waits of the runs a halt stopped, whose task tokens it took: (tokens, the
# halt's reason), called after the halt's commit (`upgrader.windows.release_window_waits`).
WindowRelease = Callable[[list[str], str], object]


@dataclass(frozen=True)
class TargetCustomer:
    customer_id: str
    namespace: str
    release_name: str
    current_version: str | None
    chart_version: str | None = None  # what the release runs, as last read from the cluster


@dataclass(frozen=True)
class NewLogRow:
    customer_id: str
    namespace: str
    release_name: str
    from_version: str | None
    to_version: str
    wave: int  # -1: left out of every wave (see left_out)
    chart_version: str | None = None  # pinned for this customer (None: resolved from its release before helm)
    left_out: str | None = None  # why the deploy left it out (pinned, already_at_version): a skipped row
    detail: str | None = None  # the reason in words, recorded as the skipped row's error


class UpgradeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def snapshot(self) -> AbstractContextManager[None]:
        """Several reads that must agree (`Database.snapshot`)."""
        return self._db.snapshot()

    # ---------------------------------------------------------------- inventory
    def upsert_customer(
        self,
        customer_id: str,
        namespace: str,
        release_name: str,
        *,
        status: str = "active",
        labels: dict[str, str] | None = None,
        versions: dict[str, str] | None = None,
        maintenance_window: dict[str, Any] | None = None,
    ) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                """
                INSERT INTO customers (id, namespace, release_name, status, labels, maintenance_window)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (id) DO UPDATE SET namespace = EXCLUDED.namespace,
                    release_name = EXCLUDED.release_name, status = EXCLUDED.status,
                    labels = EXCLUDED.labels, maintenance_window = EXCLUDED.maintenance_window,
                    updated_at = NOW()
                """,
                (
                    customer_id,
                    namespace,
                    release_name,
                    status,
                    Jsonb(labels or {}),
                    Jsonb(maintenance_window) if maintenance_window else None,
                ),
            )
            for component, version in (versions or {}).items():
                cur.execute(
                    """
                    INSERT INTO customer_component_versions (customer_id, component, version)
                    VALUES (%s, %s, %s)
                    ON CONFLICT (customer_id, component) DO UPDATE SET version = EXCLUDED.version,
                        updated_at = NOW()
                    """,
                    (customer_id, component, version),
                )

    def count_customers(self) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM customers")
            row = cur.fetchone()
            return int(row["n"]) if row else 0

    def component_versions(self, customer_id: str) -> dict[str, str]:
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT component, version FROM customer_component_versions WHERE customer_id = %s",
                (customer_id,),
            )
            return {r["component"]: r["version"] for r in cur.fetchall()}

    # ---------------------------------------------------------------- upgrades
    def create_upgrade(
        self,
        *,
        component: str,
        from_version: str | None,
        to_version: str,
        strategy: str,
        parameters: dict[str, Any],
        metadata: dict[str, Any],
        requested_by: str | None,
        rows: Sequence[NewLogRow],
        total_waves: int,
        nonce: str,
        chart_version: str | None = None,
    ) -> Row:
        """Record an upgrade and one pending log row per target customer, atomically.

        Raises UpgradeAlreadyActive when another upgrade of the component is pending, running or
        awaiting continue (a partial unique index decides, so concurrent deploys cannot both win).
        """
        try:
            with self._db.transaction() as cur:
                cur.execute(
                    """
                    INSERT INTO system_upgrades (component, from_version, to_version, strategy,
                        total_customers, status, metadata, requested_by, parameters, total_waves, chart_version)
                    VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s)
                    RETURNING id
                    """,
                    (
                        component,
                        from_version,
                        to_version,
                        strategy,
                        len(rows),
                        Jsonb(metadata),
                        requested_by,
                        Jsonb(parameters),
                        total_waves,
                        chart_version,
                    ),
                )
                upgrade_id = _one(cur)["id"]
                execution_name = f"upgrade-{upgrade_id}-{nonce}"
                cur.execute(
                    "UPDATE system_upgrades SET execution_name = %s WHERE id = %s RETURNING *",
                    (execution_name, upgrade_id),
                )
                upgrade = _one(cur)
                insert_run(cur, execution_name, upgrade_id, "upgrade", "upgrade", requested_by)
                # A customer left out is a skipped row in no run (never in a manifest, never resumed).
                cur.execute(
                    """
                    INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version,
                        to_version, status, operation, run_name, wave, namespace, release_name, requested_by,
                        chart_version, left_out, error, completed_at)
                    SELECT %s, t.customer_id, %s, t.from_version, %s,
                           CASE WHEN t.left_out IS NULL THEN 'pending' ELSE 'skipped' END, 'upgrade',
                           CASE WHEN t.left_out IS NULL THEN %s END, t.wave,
                           t.namespace, t.release_name, %s, t.chart_version, t.left_out, t.detail,
                           CASE WHEN t.left_out IS NOT NULL THEN NOW() END
                      FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::text[], %s::text[], %s::text[],
                                  %s::text[])
                           AS t(customer_id, from_version, wave, namespace, release_name, chart_version, left_out, detail)
                    """,
                    (
                        upgrade_id,
                        component,
                        to_version,
                        execution_name,
                        requested_by,
                        [r.customer_id for r in rows],
                        [r.from_version for r in rows],
                        [r.wave for r in rows],
                        [r.namespace for r in rows],
                        [r.release_name for r in rows],
                        [r.chart_version for r in rows],
                        [r.left_out for r in rows],
                        [r.detail for r in rows],
                    ),
                )
                return upgrade
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "system_upgrades_one_active_per_component":
                active = self.active_upgrade_for(component)
                which = f" (upgrade {active['id']}, status {active['status']})" if active else ""
                raise UpgradeAlreadyActive(
                    f"an upgrade of component '{component}' is already pending, running or awaiting "
                    f"continue{which}; wait for it to finish or abort it"
                ) from exc
            raise

    def delete_upgrade(self, upgrade_id: int) -> None:
        """Undo a recorded upgrade whose execution could not be started (its rows cascade)."""
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM system_upgrades WHERE id = %s AND status = 'pending'", (upgrade_id,))

    def active_upgrade_for(self, component: str) -> Row | None:
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT id, status FROM system_upgrades WHERE component = %s AND status = ANY(%s)",
                (component, list(ACTIVE_UPGRADE_STATUSES)),
            )
            return cur.fetchone()

    def get_upgrade(self, upgrade_id: int) -> Row | None:
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM system_upgrades WHERE id = %s", (upgrade_id,))
            return cur.fetchone()

    def upgrade_counts(self, upgrade_id: int) -> dict[str, int]:
        """Counts of the upgrade's customer rows by status (rollback rows apart)."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT status, count(*) AS n FROM customer_upgrade_logs
                 WHERE upgrade_id = %s AND operation = 'upgrade' GROUP BY status
                """,
                (upgrade_id,),
            )
            counts = {r["status"]: int(r["n"]) for r in cur.fetchall()}
            cur.execute(
                """
                SELECT count(DISTINCT customer_id) AS n FROM customer_upgrade_logs
                 WHERE upgrade_id = %s AND operation = 'rollback' AND status = 'completed'
                """,
                (upgrade_id,),
            )
            counts["rolled_back_by_request"] = int(_one(cur)["n"])
            cur.execute(
                """
                SELECT count(*) AS n FROM customer_upgrade_logs
                 WHERE upgrade_id = %s AND status = 'in_progress' AND waiting_for IS NOT NULL
                """,
                (upgrade_id,),
            )
            counts["waiting_for_lease"] = int(_one(cur)["n"])
            cur.execute(
                """
                SELECT left_out, count(*) AS n FROM customer_upgrade_logs
                 WHERE upgrade_id = %s AND left_out IS NOT NULL GROUP BY left_out
                """,
                (upgrade_id,),
            )
            counts.update({f"left_out:{r['left_out']}": int(r["n"]) for r in cur.fetchall()})
            return counts

    def list_upgrades(
        self,
        *,
        component: str | None,
        status: str | None,
        before_id: int | None,
        limit: int,
    ) -> list[Row]:
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT * FROM system_upgrades
                 WHERE (%(component)s::text IS NULL OR component = %(component)s)
                   AND (%(status)s::text IS NULL OR status = %(status)s)
                   AND (%(before)s::int IS NULL OR id < %(before)s)
                 ORDER BY id DESC
                 LIMIT %(limit)s
                """,
                {"component": component, "status": status, "before": before_id, "limit": limit},
            )
            return cur.fetchall()

    def list_logs(
        self,
        upgrade_id: int,
        *,
        status: str | None,
        operation: str | None,
        customer_id: str | None,
        limit: int,
        offset: int,
    ) -> tuple[int, list[Row]]:
        params = {
            "id": upgrade_id,
            "status": status,
            "operation": operation,
            "customer": customer_id,
            "limit": limit,
            "offset": offset,
        }
        where = """
            upgrade_id = %(id)s
            AND (%(status)s::text IS NULL OR status = %(status)s)
            AND (%(operation)s::text IS NULL OR operation = %(operation)s)
            AND (%(customer)s::text IS NULL OR customer_id = %(customer)s)
        """
        with self._db.transaction() as cur:
            cur.execute(f"SELECT count(*) AS n FROM customer_upgrade_logs WHERE {where}", params)
            total = int(_one(cur)["n"])
            cur.execute(
                f"SELECT * FROM customer_upgrade_logs WHERE {where} ORDER BY id LIMIT %(limit)s OFFSET %(offset)s",
                params,
            )
            return total, cur.fetchall()

    def attempts(self, upgrade_id: int) -> list[Row]:
        """The upgrade's executions (the first, then one per resume), oldest first."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT run_name, attempt, status, stop_reason, end_reason, requested_by, created_at, ended_at
                  FROM upgrade_runs WHERE upgrade_id = %s AND kind = 'upgrade' ORDER BY attempt, created_at
                """,
                (upgrade_id,),
            )
            return cur.fetchall()

    def queue_counts(self) -> dict[str, int]:
        """Upgrades recorded but not yet started, and upgrades waiting at the canary gate."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE status = 'pending') AS waiting,"
                " count(*) FILTER (WHERE status = 'awaiting_continue') AS awaiting"
                " FROM system_upgrades"
            )
            row = _one(cur)
            return {"waiting": int(row["waiting"]), "awaiting": int(row["awaiting"])}

    def request_abort(
        self,
        upgrade_id: int,
        reason: str,
        *,
        aborted_by: str | None,
        rollback: bool,
        fail_gate: Callable[[str], None],
        release_windows: Callable[[list[str]], object] | None = None,
    ) -> tuple[Row, list[Row]] | None:
        """Stop the upgrade's active runs: its own execution and any rollback run of it.

        Writes each run's stop_reason under an exclusive lock of its row (see `upgrader.leases` for
        why that makes the abort airtight); running customers finish. A waiting gate (the canary's
        approval or a bake) is failed before the commit, so the execution moves on at once.
        Returns (the upgrade, the runs stopped), or None when nothing of it is active.
        (A run whose execution is already gone is ended by the caller: see `upgrader.reconciliation`.)

        A run waiting for its customers' maintenance windows (WaitForWindows): its task token is taken
        (cleared) in the same transaction and handed to `release_windows` after the commit, so the run
        goes on at once, finds the abort and ends; its waiting customers are skipped with the abort's
        reason (`upgrader.windows.WindowRepository.store_run_token` explains why no token escapes).
        """
        windows: list[str] = []
        result = self._request_abort(upgrade_id, reason, aborted_by=aborted_by, rollback=rollback,
                                     fail_gate=fail_gate, windows=windows)  # fmt: skip
        if windows and release_windows is not None:
            release_windows(windows)
        return result

    def _request_abort(
        self, upgrade_id: int, reason: str, *, aborted_by: str | None, rollback: bool,
        fail_gate: Callable[[str], None], windows: list[str],
    ) -> tuple[Row, list[Row]] | None:  # fmt: skip
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM system_upgrades WHERE id = %s FOR NO KEY UPDATE", (upgrade_id,))
            upgrade = cur.fetchone()
            if upgrade is None:
                raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
            upgrade_active = upgrade["status"] in ACTIVE_UPGRADE_STATUSES and not str(
                upgrade["halt_reason"] or ""
            ).startswith("aborted")
            cur.execute(
                """
                SELECT run_name FROM upgrade_runs
                 WHERE upgrade_id = %s AND status = 'running' AND stop_reason IS NULL AND (kind = 'rollback' OR %s)
                 ORDER BY run_name
                """,
                (upgrade_id, upgrade_active),
            )
            gates = [run["run_name"] for run in cur.fetchall()]
            # Close each run's stop gate: wait for the lease transactions inside (each creates its Job, a
            # few bounded Kubernetes calls); longer than other lock waits, still within API Gateway's 29 s.
            cur.execute("SET LOCAL lock_timeout = '25s'")
            cur.execute("SET LOCAL statement_timeout = '26s'")
            _close_stop_gates(cur, gates)
            cur.execute(
                """
                UPDATE upgrade_runs SET stop_reason = %s, updated_at = NOW()
                 WHERE upgrade_id = %s AND status = 'running' AND stop_reason IS NULL
                   AND (kind = 'rollback' OR %s)
                RETURNING *
                """,
                (reason, upgrade_id, upgrade_active),
            )
            stopped = cur.fetchall()
            if not upgrade_active and not stopped:
                return None
            if upgrade_active:
                cur.execute(
                    """
                    UPDATE system_upgrades SET halt_reason = %s, task_token = NULL, gate = NULL, gate_until = NULL,
                           updated_at = NOW(),
                           parameters = parameters
                               || jsonb_build_object('abortRollback', %s::boolean, 'abortedBy', %s::text)
                     WHERE id = %s RETURNING *
                    """,
                    (reason, rollback, aborted_by, upgrade_id),
                )
                row = _one(cur)
                _aborted_events(cur, row, reason, aborted_by, rollback, stopped, f"aborted:{row['execution_name']}")
                tokens = _take_window_tokens(cur, upgrade_id)
                if upgrade["task_token"]:
                    fail_gate(upgrade["task_token"])
                windows.extend(tokens)
                return row, stopped
            runs = sorted(str(r["run_name"]) for r in stopped)
            _aborted_events(cur, upgrade, reason, aborted_by, rollback, stopped, f"aborted:{','.join(runs)}")
            return upgrade, stopped

    # ---------------------------------------------------------------- canary gate
    def release_gate(self, upgrade_id: int, continued_by: str | None, send: Callable[[str], None]) -> Row | None:
        """Atomically move awaiting_continue -> in_progress and call send(token) before committing.

        The row lock lets one caller win, so a second /continue never sends a second callback;
        if send() fails the transaction rolls back and the gate stays open for another try.
        """
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT task_token FROM system_upgrades
                 WHERE id = %s AND status = 'awaiting_continue' AND task_token IS NOT NULL
                   FOR NO KEY UPDATE
                """,
                (upgrade_id,),
            )
            locked = cur.fetchone()
            if locked is None:
                return None
            cur.execute(
                """
                UPDATE system_upgrades SET status = 'in_progress', task_token = NULL,
                       continued_at = NOW(), continued_by = %s, updated_at = NOW()
                 WHERE id = %s RETURNING *
                """,
                (continued_by, upgrade_id),
            )
            row = _one(cur)
            cur.execute(
                "SELECT EXTRACT(EPOCH FROM (NOW() - created_at)) AS waited FROM event_outbox WHERE event_key = %s",
                (f"gate:{row['execution_name']}:{row['current_wave']}:approval",),
            )
            opened = cur.fetchone()
            events.upgrade_event(
                cur, events.GATE_CONTINUED, upgrade_id, f"gate-continued:{row['execution_name']}:{row['current_wave']}",
                {"gate": {"kind": "approval", "wave": row["current_wave"], "continuedBy": continued_by,
                          "waitedSeconds": round(float(opened["waited"]), 3) if opened else None}},
            )  # fmt: skip
            send(locked["task_token"])
            return row


def _one(cur: psycopg.Cursor[Row]) -> Row:
    row = cur.fetchone()
    if row is None:  # pragma: no cover - RETURNING always yields a row here
        raise RuntimeError("statement returned no row")
    return row


# Claim a customer's row (see `RunRepository.claim_customer`), and tell it of the upcoming change when no
# drain has yet, in the same statement.
_CLAIM = (
    """
WITH claimed AS (
UPDATE customer_upgrade_logs l
   SET status = CASE WHEN l.status = 'pending' AND x.halt_reason IS NOT NULL THEN 'skipped'
                     ELSE 'in_progress' END,
       completed_at = CASE WHEN l.status = 'pending' AND x.halt_reason IS NOT NULL THEN NOW()
                           ELSE l.completed_at END,
       error = CASE WHEN l.status = 'pending' AND x.halt_reason IS NOT NULL
                    THEN 'not started: ' || x.halt_reason ELSE l.error END,
       started_at = COALESCE(l.started_at, NOW()), updated_at = NOW()
  FROM (SELECT u.parameters,
               COALESCE(r.stop_reason, CASE WHEN l2.operation = 'upgrade' THEN u.halt_reason END)
                   AS halt_reason
          FROM customer_upgrade_logs l2 JOIN system_upgrades u ON u.id = l2.upgrade_id
          LEFT JOIN upgrade_runs r ON r.run_name = l2.run_name
         WHERE l2.id = %(id)s) x
 WHERE l.id = %(id)s AND l.status IN ('pending', 'in_progress')
RETURNING l.*, x.parameters AS upgrade_parameters
), notice AS ("""
    + events.notice_at_start_insert("claimed")
    + """)
SELECT * FROM claimed
"""
)


class RunRepository:
    """SQL of the state machine's steps. A run is one execution: an upgrade or a rollback."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---------------------------------------------------------------- parent steps
    def start_run(self, upgrade_id: int, run_name: str, operation: str) -> tuple[Row, list[Row]]:
        """Mark the upgrade started (once) and return it with the run's rows in wave order."""
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM system_upgrades WHERE id = %s FOR NO KEY UPDATE", (upgrade_id,))
            upgrade = cur.fetchone()
            if upgrade is None:
                raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
            if operation == "upgrade":
                cur.execute(
                    """
                    UPDATE system_upgrades SET status = 'in_progress', started_at = COALESCE(started_at, NOW()),
                           current_wave = COALESCE(current_wave, 0), updated_at = NOW()
                     WHERE id = %s AND status = 'pending' RETURNING *
                    """,
                    (upgrade_id,),
                )
                started = cur.fetchone()
                if started is not None:
                    upgrade = started
                    events.upgrade_event(cur, events.UPGRADE_STARTED, upgrade_id, f"upgrade-started:{run_name}",
                                         {"run": {"runName": run_name}})  # fmt: skip
            cur.execute(
                "SELECT id, customer_id, wave FROM customer_upgrade_logs WHERE run_name = %s ORDER BY wave, id",
                (run_name,),
            )
            return upgrade, cur.fetchall()

    def run_size(self, run_name: str) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM customer_upgrade_logs WHERE run_name = %s", (run_name,))
            return int(_one(cur)["n"])

    def wave_rows(self, run_name: str, wave: int) -> list[Row]:
        """The run's customers of one wave (the items of its manifest), in order."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT id, customer_id FROM customer_upgrade_logs WHERE run_name = %s AND wave = %s ORDER BY id",
                (run_name, wave),
            )
            return cur.fetchall()

    def total_waves(self, upgrade_id: int) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT total_waves FROM system_upgrades WHERE id = %s", (upgrade_id,))
            row = cur.fetchone()
            return int(row["total_waves"]) if row else 0

    def stop_reason(self, run_name: str) -> str | None:
        with self._db.transaction() as cur:
            cur.execute("SELECT stop_reason FROM upgrade_runs WHERE run_name = %s", (run_name,))
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
            return _halt(cur, upgrade_id, reason)

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
            size = int(_one(cur)["n"])
            events.upgrade_event(cur, events.WAVE_STARTED, upgrade_id,
                                 f"wave-started:{current['execution_name']}:{wave}", {"wave": {"wave": wave, "size": size}})  # fmt: skip

    def finalize_upgrade(self, upgrade_id: int, run_name: str, failure: str | None) -> Row:
        """Skip what never started, then set the final status once (a retry changes nothing)."""
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM system_upgrades WHERE id = %s FOR NO KEY UPDATE", (upgrade_id,))
            upgrade = cur.fetchone()
            if upgrade is None:
                raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
            if upgrade["status"] not in ACTIVE_UPGRADE_STATUSES:
                _end_run(cur, run_name, upgrade["status"])
                return upgrade
            reason = upgrade["halt_reason"] or failure
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
            counts = _one(cur)
            if upgrade["halt_reason"] and upgrade["halt_reason"].startswith("aborted"):
                final = "aborted"
            elif upgrade["halt_reason"]:
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
            cur.execute(
                """
                UPDATE system_upgrades SET status = %s, completed_at = NOW(), task_token = NULL, gate = NULL,
                       gate_until = NULL, halt_reason = COALESCE(halt_reason, %s), updated_at = NOW()
                 WHERE id = %s RETURNING *
                """,
                (final, failure, upgrade_id),
            )
            finished = _one(cur)
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
            # Lock order as everywhere: the upgrade's row first, then its run's (see `upgrader.leases`).
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
            counts = _one(cur)
            cur.execute("SELECT stop_reason FROM upgrade_runs WHERE run_name = %s", (run_name,))
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
                         "failed": int(counts["failed"])}},
                severity="info" if counts["failed"] == 0 else "attention",
            )  # fmt: skip
            return {"completed": int(counts["completed"]), "failed": int(counts["failed"])}

    def create_abort_rollback(self, upgrade_id: int, *, requested_by: str | None, run_name: str) -> list[Row]:
        """The rollback an abort with rollback asked for, run by the same execution."""
        rows, _ = RollbackRepository(self._db).create_upgrade_rollback(
            upgrade_id, requested_by=requested_by, run_name=run_name, scope="abort"
        )
        return rows

    # ---------------------------------------------------------------- child steps
    def claim_customer(self, log_id: int) -> tuple[str, Row, dict[str, Any]]:
        """Begin a customer: ('run', row) once claimed; ('done', row) when there is nothing to do.

        A customer started before the publisher's drain told it of the upcoming change is told now, in the
        same statement (`events.notice_at_start_insert`), so its notices always come in order.

        A row already finished (a duplicated or retried delivery) is never started again, and
        a customer whose run was stopped (halt, abort) before it began is skipped. One statement, in
        autocommit (a retry that finds the row final reads it with a second one).
        """
        with self._db.statement() as cur:
            cur.execute(
                _CLAIM,
                {"id": log_id, "lead": notice_lead_seconds()},
            )
            row = cur.fetchone()
            if row is None:  # already final (or unknown): nothing to do
                cur.execute(
                    """
                    SELECT l.*, u.parameters AS upgrade_parameters FROM customer_upgrade_logs l
                      JOIN system_upgrades u ON u.id = l.upgrade_id WHERE l.id = %s
                    """,
                    (log_id,),
                )
                row = cur.fetchone()
                if row is None:
                    raise LogRowNotFound(f"customer log row {log_id} not found")
                return "done", row, row["upgrade_parameters"] or {}
            action = "done" if row["status"] == "skipped" else "run"
            return action, row, row["upgrade_parameters"] or {}

    def finish_customer(
        self, log_id: int, status: str, output: str | None, error: str | None,
        release: Mapping[str, Any] | None = None, *, helm_seconds: float | None = None,
        release_windows: WindowRelease | None = None,
    ) -> tuple[bool, Row]:  # fmt: skip
        """Record a customer's result in one transaction, once: its row, the upgrade's counter, what
        the release holds now (revision, versions: the inventory follows the release, never the
        request), the lease given back, and the wave's failure budget (exceeded: halt at once).

        A halt recorded here also takes the window-wait tokens of the upgrade's runs waiting for their
        customers' maintenance windows, and hands them to `release_windows` after the commit (see `halt`).
        A retry records nothing, so it halts and releases nothing a second time.

        Returns (changed, row): changed is False when the row was already final (a retry).

        One statement (`_FINISH`, its events included); a failure, which may exceed the budget, checks
        it after that statement in the same transaction, any other result is one statement in autocommit.
        """
        windows: list[str] | None = [] if release_windows is not None else None
        # Whatever reaches the row (and from it the events, the webhook and Slack) is redacted: a Catch's
        # cause or an API error can quote what a customer's chart or webhook said.
        output, error = redact(output), redact(error)
        changed, row, halted = self._finish_customer(log_id, status, output, error, release, helm_seconds, windows)
        if windows and halted and release_windows is not None:
            release_windows(windows, halted)
        return changed, row

    def _finish_customer(
        self, log_id: int, status: str, output: str | None, error: str | None,
        release: Mapping[str, Any] | None, helm_seconds: float | None, windows: list[str] | None,
    ) -> tuple[bool, Row, str | None]:  # fmt: skip
        """finish_customer's transaction: (changed, row, the halt's reason when it halted the upgrade)."""
        release = release or {}
        versions = {c: v for c, v in (release.get("versions") or {}).items() if v}
        may_halt = status in ("failed", "rolled_back")
        with self._db.transaction() if may_halt else self._db.statement() as cur:
            cur.execute(
                _FINISH,
                {"status": status, "error": error, "output": output, "revision": release.get("revision"),
                 "versions": Jsonb(versions), "chart": release.get("chartVersion"), "id": log_id,
                 "helm_seconds": helm_seconds, "outcomes": events.outcome_parameter(status)},
            )  # fmt: skip
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT * FROM customer_upgrade_logs WHERE id = %s", (log_id,))
                existing = cur.fetchone()
                if existing is None:
                    raise LogRowNotFound(f"customer log row {log_id} not found")
                return False, existing, None
            halted = None
            if row["operation"] == "upgrade" and may_halt:
                halted = _halt_when_over_budget(cur, row, windows)
            return True, row, halted


# A customer's result, in one statement: its row, the upgrade's counter (upgrade rows; a customer rolled
# back after a failed upgrade counts as failed: the spec has two counters), the inventory from what the
# release holds afterwards (every component read; previous_version and upgrade_id move only when the
# version changed), the customer's release revision and chart, its lease given back, and its outcome
# events (`events.customer_outcome`, from the row and the upgrade as this statement leaves them).
_FINISH = f"""
WITH done AS (
    UPDATE customer_upgrade_logs SET status = %(status)s, completed_at = NOW(), updated_at = NOW(),
           started_at = COALESCE(started_at, NOW()), error = %(error)s, waiting_for = NULL,
           output = NULLIF(concat_ws(E'\\n', output, %(output)s::text), ''),
           revision_after = COALESCE(%(revision)s::int, revision_after),
           helm_seconds = COALESCE(%(helm_seconds)s::real, helm_seconds),
           version_after = CASE WHEN %(revision)s::int IS NULL THEN version_after
                                ELSE %(versions)s::jsonb ->> component END
     WHERE id = %(id)s AND status IN ('pending', 'in_progress')
    RETURNING *
), counted AS (
    UPDATE system_upgrades u
       SET completed_customers = u.completed_customers + (d.status = 'completed')::int,
           failed_customers = u.failed_customers + (d.status IN ('failed', 'rolled_back'))::int,
           updated_at = NOW()
      FROM done d
     WHERE u.id = d.upgrade_id AND d.operation = 'upgrade' AND d.status IN ('completed', 'failed', 'rolled_back')
    RETURNING u.*
), upgrade_now AS (
    SELECT * FROM counted
    UNION ALL
    SELECT u.* FROM system_upgrades u JOIN done d ON u.id = d.upgrade_id WHERE NOT EXISTS (SELECT 1 FROM counted)
), outcome AS ({events.outcome_insert("done", "upgrade_now")}
), inventory AS (
    INSERT INTO customer_component_versions AS v (customer_id, component, version, upgrade_id, updated_at)
    SELECT d.customer_id, t.component, t.version, CASE WHEN t.component = d.component THEN d.upgrade_id END, NOW()
      FROM done d CROSS JOIN jsonb_each_text(%(versions)s::jsonb) AS t(component, version)
     WHERE %(revision)s::int IS NOT NULL
    ON CONFLICT (customer_id, component) DO UPDATE
       SET previous_version = CASE WHEN v.version IS DISTINCT FROM EXCLUDED.version THEN v.version
                                   ELSE v.previous_version END,
           upgrade_id = CASE WHEN v.version IS DISTINCT FROM EXCLUDED.version
                             THEN COALESCE(EXCLUDED.upgrade_id, v.upgrade_id) ELSE v.upgrade_id END,
           version = EXCLUDED.version,
           updated_at = CASE WHEN v.version IS DISTINCT FROM EXCLUDED.version THEN NOW() ELSE v.updated_at END
), customer AS (
    UPDATE customers c SET release_revision = %(revision)s::int, chart_version = COALESCE(%(chart)s, c.chart_version),
           updated_at = NOW()
      FROM done d
     WHERE c.id = d.customer_id AND %(revision)s::int IS NOT NULL
), freed AS (
    DELETE FROM customer_leases WHERE log_id IN (SELECT id FROM done)
)
SELECT * FROM done
"""


def _take_window_tokens(cur: psycopg.Cursor[Row], upgrade_id: int) -> list[str]:
    """The task tokens of the upgrade's running runs waiting for their customers' maintenance windows
    (WaitForWindows), cleared (taken) in the caller's transaction, which has stopped those runs (abort,
    halt: their `stop_reason` is written, their rows locked): the caller ends each wait after its commit.
    A token taken once is never sent twice, and none is stored after the stop
    (`upgrader.windows.WindowRepository.store_run_token` reads the run's row as the stop left it)."""
    cur.execute(
        """
        UPDATE upgrade_runs r SET window_token = NULL, updated_at = NOW()
          FROM (SELECT run_name, window_token FROM upgrade_runs
                 WHERE upgrade_id = %s AND status = 'running' AND window_token IS NOT NULL
                 ORDER BY run_name FOR NO KEY UPDATE) old
         WHERE r.run_name = old.run_name
        RETURNING old.window_token AS token
        """,
        (upgrade_id,),
    )
    return [r["token"] for r in cur.fetchall()]


def _close_stop_gates(cur: psycopg.Cursor[Row], run_names: Sequence[str]) -> None:
    """Take each run's stop gate exclusively, in the transaction that writes its stop (see `upgrader.leases`):
    this waits for the lease transactions inside, each of which creates its Job before it commits, and every
    lease transaction that comes later waits for this one and reads the stop. In name order, so two stops
    of the same runs never wait on each other."""
    for run_name in sorted(run_names):
        cur.execute(f"SELECT pg_advisory_xact_lock({STOP_GATE})", (run_name,))


def _halt(cur: psycopg.Cursor[Row], upgrade_id: int, reason: str, budget: dict[str, Any] | None = None, *,
          windows: list[str] | None = None) -> bool:  # fmt: skip
    """Set the upgrade's halt reason (first wins) and stop its running upgrade run(s) as an abort does: their
    stop gates closed first, so once this commits no lease transaction that read no stop is still creating a
    Job; then `Customer Notice Cancelled` to the customers told that will not now start (once). With
    `windows`, take the window-wait tokens of its runs into it (the caller ends those waits after the commit).

    Lock order as everywhere: the upgrade's row, then its runs' stop gates and rows, then log rows (see
    `upgrader.leases`; `finish_customer` holds its own log row already: see there).
    """
    cur.execute(
        "UPDATE system_upgrades SET halt_reason = %s, updated_at = NOW() WHERE id = %s AND halt_reason IS NULL"
        " RETURNING id, execution_name",
        (reason, upgrade_id),
    )
    halted = cur.fetchone()
    first = halted is not None
    if halted is not None:
        events.upgrade_event(cur, events.UPGRADE_HALTED, upgrade_id, f"halted:{halted['execution_name']}",
                             {"halt": {"reason": reason, "budget": budget}})  # fmt: skip
    cur.execute(
        """
        SELECT run_name FROM upgrade_runs
         WHERE upgrade_id = %s AND kind = 'upgrade' AND status = 'running' AND stop_reason IS NULL
        """,
        (upgrade_id,),
    )
    _close_stop_gates(cur, [r["run_name"] for r in cur.fetchall()])
    cur.execute(
        """
        UPDATE upgrade_runs SET stop_reason = %s, updated_at = NOW()
         WHERE upgrade_id = %s AND kind = 'upgrade' AND status = 'running' AND stop_reason IS NULL
        """,
        (reason, upgrade_id),
    )
    if first:
        events.cancel_notices(cur, upgrade_id, reason)
    if windows is not None:
        windows.extend(_take_window_tokens(cur, upgrade_id))
    return first


def notice_lead_seconds() -> int:
    """How long before a planned start customers are told (NOTICE_LEAD_MINUTES)."""
    from upgrader.settings import get_settings

    return int(get_settings().notice_lead_minutes) * 60


def _halt_when_over_budget(cur: psycopg.Cursor[Row], row: Row, windows: list[str] | None = None) -> str | None:
    """A failure was just recorded: when its wave is now over its failure budget, halt the upgrade (and
    take the window-wait tokens into `windows`, see `_halt`). Returns the halt's reason, None if none.

    Only while the row's own run runs: the late outcome of a Job whose run has ended (settled by the
    reconciler) counts in that run's wave and the upgrade's counters, and never halts the upgrade, whose
    current run (a resume's) has a failure budget of its own."""
    cur.execute(
        """
        SELECT u.strategy, u.total_waves, u.parameters, r.status AS run_status, count(*) AS size,
               count(*) FILTER (WHERE l.status IN ('failed', 'rolled_back')) AS failed
          FROM customer_upgrade_logs l JOIN system_upgrades u ON u.id = l.upgrade_id
          LEFT JOIN upgrade_runs r ON r.run_name = l.run_name
         WHERE l.run_name = %s AND l.wave = %s
         GROUP BY u.strategy, u.total_waves, u.parameters, r.status
        """,
        (row["run_name"], row["wave"]),
    )
    wave = cur.fetchone()
    if wave is None or wave["run_status"] != "running":
        return None
    allowed = tolerated_failures(
        wave["strategy"], int(row["wave"]), int(wave["size"]), (wave["parameters"] or {}).get("failureThreshold")
    )
    if int(wave["failed"]) <= allowed:
        return None
    reason = budget_reason(int(row["wave"]), int(wave["total_waves"]), int(wave["failed"]), int(wave["size"]), allowed)
    _halt(cur, int(row["upgrade_id"]), reason, budget_of(int(row["wave"]), int(wave["failed"]), int(wave["size"]),
                                                         allowed), windows=windows)  # fmt: skip
    return reason


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


def budget_of(wave: int, failed: int, size: int, allowed: int) -> dict[str, Any]:
    """A wave's failure budget as events carry it: consumed is failed / (tolerated + 1), since the
    wave halts on the first failure past what it tolerates (1.0 and more: over budget)."""
    return {"wave": wave, "failed": failed, "size": size, "tolerated": allowed,
            "consumed": round(failed / (allowed + 1), 4)}  # fmt: skip


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
        allowed = tolerated_failures(found["strategy"], wave, size, (found["parameters"] or {}).get("failureThreshold"))
        detail["budget"] = budget_of(wave, failed, size, allowed)
        if detail["budget"]["consumed"] >= 0.5:
            severity = "attention"
    events.upgrade_event(cur, events.WAVE_FINISHED, int(found["upgrade_id"]), f"wave-finished:{run_name}:{wave}",
                         {"wave": detail}, severity=severity)  # fmt: skip


def _aborted_events(
    cur: psycopg.Cursor[Row], upgrade: Row, reason: str, aborted_by: str | None, rollback: bool,
    stopped: Sequence[Row], key: str,
) -> None:  # fmt: skip
    """An abort was recorded: its event, and a cancellation to every customer told of an upcoming change
    that it will now not get (`events.cancel_notices`)."""
    upgrade_id = int(upgrade["id"])
    events.upgrade_event(
        cur, events.UPGRADE_ABORTED, upgrade_id, key,
        {"abort": {"reason": reason, "abortedBy": aborted_by, "rollback": rollback,
                   "stoppedRuns": sorted(str(r["run_name"]) for r in stopped)}},
    )  # fmt: skip
    events.cancel_notices(cur, upgrade_id, reason)
