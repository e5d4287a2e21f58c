"""Every SQL statement of the product. Parameterized always; each public method is one transaction.

Status changes are conditional UPDATEs and counters move in the same transaction as the row they
count, so a retried or duplicated call changes nothing the second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from upgrader.db import Database, Row
from upgrader.errors import CustomerNotInUpgrade, LogRowNotFound, UpgradeAlreadyActive, UpgradeNotFound, WrongState

ACTIVE_UPGRADE_STATUSES = ("pending", "in_progress", "awaiting_continue")
FINAL_UPGRADE_STATUSES = (
    "completed", "completed_with_failures", "failed", "halted", "aborted", "rolled_back", "rollback_incomplete",
)  # fmt: skip
FINAL_LOG_STATUSES = ("completed", "failed", "skipped", "rolled_back")


@dataclass(frozen=True)
class TargetCustomer:
    customer_id: str
    namespace: str
    release_name: str
    current_version: str | None


@dataclass(frozen=True)
class NewLogRow:
    customer_id: str
    namespace: str
    release_name: str
    from_version: str | None
    to_version: str
    wave: int


class UpgradeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ---------------------------------------------------------------- inventory
    def target_customers(
        self, component: str, customer_ids: Sequence[str] | None, labels: dict[str, str] | None
    ) -> list[TargetCustomer]:
        """Active customers to upgrade, canary-labelled ones first, then by id (a stable order)."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT c.id, c.namespace, c.release_name, v.version AS current_version
                  FROM customers c
                  LEFT JOIN customer_component_versions v
                         ON v.customer_id = c.id AND v.component = %(component)s
                 WHERE c.status = 'active'
                   AND (%(ids)s::text[] IS NULL OR c.id = ANY(%(ids)s::text[]))
                   AND c.labels @> %(labels)s
                 ORDER BY (c.labels->>'canary' = 'true') IS TRUE DESC, c.id
                """,
                {
                    "component": component,
                    "ids": list(customer_ids) if customer_ids is not None else None,
                    "labels": Jsonb(labels or {}),
                },
            )
            return [
                TargetCustomer(r["id"], r["namespace"], r["release_name"], r["current_version"]) for r in cur.fetchall()
            ]

    def known_customer_ids(self, customer_ids: Sequence[str]) -> dict[str, str]:
        """id -> status for the ids that exist in the inventory."""
        with self._db.transaction() as cur:
            cur.execute("SELECT id, status FROM customers WHERE id = ANY(%s::text[])", (list(customer_ids),))
            return {r["id"]: r["status"] for r in cur.fetchall()}

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
                        total_customers, status, metadata, requested_by, parameters, total_waves)
                    VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s, %s)
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
                    ),
                )
                upgrade_id = _one(cur)["id"]
                execution_name = f"upgrade-{upgrade_id}-{nonce}"
                cur.execute(
                    "UPDATE system_upgrades SET execution_name = %s WHERE id = %s RETURNING *",
                    (execution_name, upgrade_id),
                )
                upgrade = _one(cur)
                cur.execute(
                    """
                    INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version,
                        to_version, status, operation, run_name, wave, namespace, release_name, requested_by)
                    SELECT %s, t.customer_id, %s, t.from_version, %s, 'pending', 'upgrade', %s, t.wave,
                           t.namespace, t.release_name, %s
                      FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::text[])
                           AS t(customer_id, from_version, wave, namespace, release_name)
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

    # ---------------------------------------------------------------- rollback requests
    def create_rollback(self, upgrade_id: int, customer_id: str, *, requested_by: str | None) -> Row:
        """Record a rollback of one customer of an upgrade (pending; its execution runs it).

        Refused when the customer's upgrade has not finished successfully, or when a rollback of
        that customer is already open or done.
        """
        try:
            with self._db.transaction() as cur:
                cur.execute(
                    """
                    SELECT * FROM customer_upgrade_logs
                     WHERE upgrade_id = %s AND customer_id = %s AND operation = 'upgrade'
                       FOR UPDATE
                    """,
                    (upgrade_id, customer_id),
                )
                upgraded = cur.fetchone()
                if upgraded is None:
                    raise CustomerNotInUpgrade(f"customer '{customer_id}' is not part of upgrade {upgrade_id}")
                if upgraded["status"] in ("pending", "in_progress"):
                    raise WrongState(
                        f"the upgrade of customer '{customer_id}' is still {upgraded['status']}; "
                        "roll it back once it has finished"
                    )
                if upgraded["status"] != "completed":
                    raise WrongState(
                        f"the upgrade of customer '{customer_id}' ended '{upgraded['status']}': its release "
                        "was not changed by this upgrade, so there is nothing to roll back"
                    )
                cur.execute(
                    """
                    SELECT status FROM customer_upgrade_logs
                     WHERE upgrade_id = %s AND customer_id = %s AND operation = 'rollback'
                       AND status IN ('pending', 'in_progress', 'completed')
                    """,
                    (upgrade_id, customer_id),
                )
                existing = cur.fetchone()
                if existing is not None:
                    state = "already rolled back" if existing["status"] == "completed" else "being rolled back"
                    raise WrongState(f"customer '{customer_id}' is {state} for upgrade {upgrade_id}")
                cur.execute(
                    """
                    INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version,
                        to_version, status, operation, wave, namespace, release_name, requested_by, attempt)
                    VALUES (%s, %s, %s, %s, %s, 'pending', 'rollback', 0, %s, %s, %s,
                            (SELECT count(*) + 1 FROM customer_upgrade_logs
                              WHERE upgrade_id = %s AND customer_id = %s AND operation = 'rollback'))
                    RETURNING id
                    """,
                    (
                        upgrade_id,
                        customer_id,
                        upgraded["component"],
                        upgraded["to_version"],
                        upgraded["from_version"] or "previous",
                        upgraded["namespace"],
                        upgraded["release_name"],
                        requested_by,
                        upgrade_id,
                        customer_id,
                    ),
                )
                log_id = _one(cur)["id"]
                cur.execute(
                    "UPDATE customer_upgrade_logs SET run_name = %s WHERE id = %s RETURNING *",
                    (f"rollback-{upgrade_id}-{log_id}", log_id),
                )
                return _one(cur)
        except psycopg.errors.UniqueViolation as exc:
            raise WrongState(f"customer '{customer_id}' is already being rolled back") from exc

    def create_upgrade_rollback(self, upgrade_id: int, *, requested_by: str | None, run_name: str) -> list[Row]:
        """Record a rollback of every customer the upgrade changed, waves in reverse order.

        Customers already rolled back (or being rolled back) are left out. Refused while the
        upgrade is still active: abort it first.
        """
        with self._db.transaction() as cur:
            cur.execute("SELECT status FROM system_upgrades WHERE id = %s FOR UPDATE", (upgrade_id,))
            upgrade = cur.fetchone()
            if upgrade is None:
                raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
            if upgrade["status"] in ACTIVE_UPGRADE_STATUSES:
                raise WrongState(
                    f"upgrade {upgrade_id} is still {upgrade['status']}; abort it with "
                    '{"rollback": true} to stop it and roll back what it changed'
                )
            cur.execute(
                """
                INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version, to_version,
                       status, operation, run_name, wave, namespace, release_name, requested_by, attempt)
                SELECT u.upgrade_id, u.customer_id, u.component, u.to_version, COALESCE(u.from_version, 'previous'),
                       'pending', 'rollback', %(run)s, m.max_wave - u.wave, u.namespace, u.release_name, %(who)s,
                       (SELECT count(*) + 1 FROM customer_upgrade_logs r
                         WHERE r.upgrade_id = u.upgrade_id AND r.customer_id = u.customer_id
                           AND r.operation = 'rollback')
                  FROM customer_upgrade_logs u
                 CROSS JOIN (SELECT max(wave) AS max_wave FROM customer_upgrade_logs
                              WHERE upgrade_id = %(id)s AND operation = 'upgrade') m
                 WHERE u.upgrade_id = %(id)s AND u.operation = 'upgrade' AND u.status = 'completed'
                   AND NOT EXISTS (SELECT 1 FROM customer_upgrade_logs r
                                    WHERE r.upgrade_id = u.upgrade_id AND r.customer_id = u.customer_id
                                      AND r.operation = 'rollback'
                                      AND r.status IN ('pending', 'in_progress', 'completed'))
                 ORDER BY u.wave DESC, u.id
                RETURNING id, customer_id, wave
                """,
                {"run": run_name, "who": requested_by, "id": upgrade_id},
            )
            return cur.fetchall()

    def request_abort(
        self,
        upgrade_id: int,
        reason: str,
        *,
        aborted_by: str | None,
        rollback: bool,
        fail_gate: Callable[[str], None],
    ) -> Row | None:
        """Stop starting customers (running ones finish). Releases a waiting canary gate as failed."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT status, task_token FROM system_upgrades
                 WHERE id = %s AND status = ANY(%s) AND (halt_reason IS NULL OR halt_reason NOT LIKE 'aborted%%')
                   FOR UPDATE
                """,
                (upgrade_id, list(ACTIVE_UPGRADE_STATUSES)),
            )
            current = cur.fetchone()
            if current is None:
                return None
            cur.execute(
                """
                UPDATE system_upgrades SET halt_reason = %s, task_token = NULL, updated_at = NOW(),
                       parameters = parameters
                           || jsonb_build_object('abortRollback', %s::boolean, 'abortedBy', %s::text)
                 WHERE id = %s RETURNING *
                """,
                (reason, rollback, aborted_by, upgrade_id),
            )
            row = _one(cur)
            if current["status"] == "awaiting_continue" and current["task_token"]:
                fail_gate(current["task_token"])
            return row

    def delete_run(self, run_name: str) -> None:
        """Undo recorded rollback rows whose execution could not be started."""
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM customer_upgrade_logs WHERE run_name = %s AND operation = 'rollback' AND status = 'pending'",
                (run_name,),
            )

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
                   FOR UPDATE
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
            send(locked["task_token"])
            return row


def _one(cur: psycopg.Cursor[Row]) -> Row:
    row = cur.fetchone()
    if row is None:  # pragma: no cover - RETURNING always yields a row here
        raise RuntimeError("statement returned no row")
    return row


class RunRepository:
    """SQL of the state machine's steps. A run is one execution: an upgrade or a rollback."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---------------------------------------------------------------- parent steps
    def start_run(self, upgrade_id: int, run_name: str, operation: str) -> tuple[Row, list[Row]]:
        """Mark the upgrade started (once) and return it with the run's rows in wave order."""
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM system_upgrades WHERE id = %s FOR UPDATE", (upgrade_id,))
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
                upgrade = cur.fetchone() or upgrade
            cur.execute(
                "SELECT id, customer_id, wave FROM customer_upgrade_logs WHERE run_name = %s ORDER BY wave, id",
                (run_name,),
            )
            return upgrade, cur.fetchall()

    def run_size(self, run_name: str) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM customer_upgrade_logs WHERE run_name = %s", (run_name,))
            return int(_one(cur)["n"])

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

    def close_unfinished(self, run_name: str, wave: int | None, reason: str) -> int:
        """Rows a wave left in_progress (a child that could not record its result) end as failed."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET status = 'failed', completed_at = NOW(),
                       error = COALESCE(error, %s), updated_at = NOW()
                 WHERE run_name = %s AND (%s::int IS NULL OR wave = %s) AND status = 'in_progress'
                RETURNING id, upgrade_id, operation
                """,
                (reason, run_name, wave, wave),
            )
            closed = cur.fetchall()
            _count(cur, [r for r in closed if r["operation"] == "upgrade"], "failed")
            return len(closed)

    def halt(self, upgrade_id: int, reason: str) -> bool:
        """Ask every customer not yet started to stay untouched. First reason wins."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE system_upgrades SET halt_reason = %s, updated_at = NOW()
                 WHERE id = %s AND halt_reason IS NULL RETURNING id
                """,
                (reason, upgrade_id),
            )
            return cur.fetchone() is not None

    def halt_reason(self, upgrade_id: int) -> str | None:
        with self._db.transaction() as cur:
            cur.execute("SELECT halt_reason FROM system_upgrades WHERE id = %s", (upgrade_id,))
            row = cur.fetchone()
            return row["halt_reason"] if row else None

    def store_task_token(self, upgrade_id: int, token: str, wave: int) -> bool:
        """The canary gate opens: keep the token so /continue can release the execution."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE system_upgrades SET status = 'awaiting_continue', task_token = %s,
                       current_wave = %s, updated_at = NOW()
                 WHERE id = %s AND status IN ('in_progress', 'awaiting_continue') AND halt_reason IS NULL
                RETURNING id
                """,
                (token, wave, upgrade_id),
            )
            return cur.fetchone() is not None

    def set_current_wave(self, upgrade_id: int, wave: int) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE system_upgrades SET current_wave = %s, updated_at = NOW() WHERE id = %s AND current_wave < %s",
                (wave, upgrade_id, wave),
            )

    def finalize_upgrade(self, upgrade_id: int, run_name: str, failure: str | None) -> Row:
        """Skip what never started, then set the final status once (a retry changes nothing)."""
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM system_upgrades WHERE id = %s FOR UPDATE", (upgrade_id,))
            upgrade = cur.fetchone()
            if upgrade is None:
                raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
            if upgrade["status"] not in ACTIVE_UPGRADE_STATUSES:
                return upgrade
            reason = upgrade["halt_reason"] or failure
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET status = 'skipped', completed_at = NOW(), updated_at = NOW(),
                       error = %s
                 WHERE run_name = %s AND status = 'pending'
                """,
                (f"not started: {reason}" if reason else "not started", run_name),
            )
            cur.execute(
                """
                SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
                       count(*) FILTER (WHERE status IN ('failed', 'rolled_back')) AS failed
                  FROM customer_upgrade_logs WHERE run_name = %s
                """,
                (run_name,),
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
                UPDATE system_upgrades SET status = %s, completed_at = NOW(), task_token = NULL,
                       halt_reason = COALESCE(halt_reason, %s), updated_at = NOW()
                 WHERE id = %s RETURNING *
                """,
                (final, failure, upgrade_id),
            )
            return _one(cur)

    def finalize_rollback(self, upgrade_id: int, run_name: str, whole_upgrade: bool) -> dict[str, int]:
        """Counts of a rollback run; a whole-upgrade rollback also sets the upgrade's final status.

        Rows the run never started are closed as skipped, so they do not block a later rollback.
        """
        with self._db.transaction() as cur:
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
                       count(*) FILTER (WHERE status <> 'completed') AS failed
                  FROM customer_upgrade_logs WHERE run_name = %s
                """,
                (run_name,),
            )
            counts = _one(cur)
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
            return {"completed": int(counts["completed"]), "failed": int(counts["failed"])}

    def create_upgrade_rollback(self, upgrade_id: int, *, requested_by: str | None, run_name: str) -> list[Row]:
        return UpgradeRepository(self._db).create_upgrade_rollback(
            upgrade_id, requested_by=requested_by, run_name=run_name
        )

    # ---------------------------------------------------------------- child steps
    def claim_customer(self, log_id: int) -> tuple[str, Row, dict[str, Any]]:
        """Begin a customer: ('run', row) once claimed; ('done', row) when there is nothing to do.

        A row already finished (a duplicated or retried delivery) is never started again, and
        a customer whose upgrade was halted before it began is skipped.
        """
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT l.*, u.halt_reason, u.status AS upgrade_status, u.parameters AS upgrade_parameters
                  FROM customer_upgrade_logs l JOIN system_upgrades u ON u.id = l.upgrade_id
                 WHERE l.id = %s FOR UPDATE OF l
                """,
                (log_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise LogRowNotFound(f"customer log row {log_id} not found")
            parameters = row["upgrade_parameters"] or {}
            if row["status"] in FINAL_LOG_STATUSES:
                return "done", row, parameters
            if row["status"] == "pending" and row["operation"] == "upgrade" and row["halt_reason"]:
                cur.execute(
                    """
                    UPDATE customer_upgrade_logs SET status = 'skipped', completed_at = NOW(), updated_at = NOW(),
                           error = %s WHERE id = %s RETURNING *
                    """,
                    (f"not started: {row['halt_reason']}", log_id),
                )
                return "done", _one(cur), parameters
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET status = 'in_progress', started_at = COALESCE(started_at, NOW()),
                       updated_at = NOW()
                 WHERE id = %s RETURNING *
                """,
                (log_id,),
            )
            return "run", _one(cur), parameters

    def halt_reason_for(self, log_id: int) -> tuple[Row, str | None]:
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT l.*, u.halt_reason FROM customer_upgrade_logs l
                  JOIN system_upgrades u ON u.id = l.upgrade_id WHERE l.id = %s
                """,
                (log_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise LogRowNotFound(f"customer log row {log_id} not found")
            return row, row["halt_reason"]

    def record_job(self, log_id: int, job_name: str, note: str | None = None) -> None:
        """Remember the customer's current Job; a note (e.g. a recovery) is kept in its output."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET job_name = %s, updated_at = NOW(),
                       output = CASE WHEN %s::text IS NULL THEN output
                                     ELSE concat_ws(E'\n', output, %s::text) END
                 WHERE id = %s AND job_name IS DISTINCT FROM %s
                """,
                (job_name, note, note, log_id, job_name),
            )

    def finish_customer(self, log_id: int, status: str, output: str | None, error: str | None) -> tuple[bool, Row]:
        """Record a customer's result, its counter and its version, in one transaction, once.

        Returns (changed, row): changed is False when the row was already final (a retry).
        """
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET status = %s, completed_at = NOW(), updated_at = NOW(),
                       started_at = COALESCE(started_at, NOW()), error = %s,
                       output = NULLIF(concat_ws(E'\n', output, %s::text), '')
                 WHERE id = %s AND status IN ('pending', 'in_progress') RETURNING *
                """,
                (status, error, output, log_id),
            )
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT * FROM customer_upgrade_logs WHERE id = %s", (log_id,))
                existing = cur.fetchone()
                if existing is None:
                    raise LogRowNotFound(f"customer log row {log_id} not found")
                return False, existing
            if row["operation"] == "upgrade":
                _count(cur, [row], status)
            if status == "completed" and row["to_version"] != "previous":
                cur.execute(
                    """
                    INSERT INTO customer_component_versions (customer_id, component, version, previous_version,
                           upgrade_id, updated_at)
                    VALUES (%s, %s, %s, %s, %s, NOW())
                    ON CONFLICT (customer_id, component) DO UPDATE SET version = EXCLUDED.version,
                        previous_version = EXCLUDED.previous_version, upgrade_id = EXCLUDED.upgrade_id,
                        updated_at = NOW()
                    """,
                    (row["customer_id"], row["component"], row["to_version"], row["from_version"], row["upgrade_id"]),
                )
            return True, row


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
