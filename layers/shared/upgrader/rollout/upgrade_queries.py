"""What the API reads of upgrades, their customers' rows and the inventory (each method one transaction)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from upgrader.contract.models import LogEntry
from upgrader.infra.db import Database, Row, columns, one_row, select, select_one
from upgrader.infra.vocabulary import ACTIVE_UPGRADE_STATUSES
from upgrader.rollout.upgrade_records import AttemptRecord, UpgradeRecord

_UPGRADE = columns(UpgradeRecord)
_LOG = columns(LogEntry)  # GET .../logs shows the rows as they are: the answer's model is their record


class UpgradeQueries:
    """Reads of upgrades and the inventory; `UpgradeRepository` adds the writes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def snapshot(self) -> AbstractContextManager[None]:
        """Several reads that must agree (`Database.snapshot`)."""
        return self._db.snapshot()

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

    def active_upgrade_for(self, component: str) -> Row | None:
        """The active upgrade that sets `component` (alone, or in a train), if any."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT id, status FROM system_upgrades WHERE (component = %(c)s OR %(c)s = ANY(components))"
                " AND status = ANY(%(active)s) ORDER BY id LIMIT 1",
                {"c": component, "active": list(ACTIVE_UPGRADE_STATUSES)},
            )
            return cur.fetchone()

    def get_upgrade(self, upgrade_id: int) -> UpgradeRecord | None:
        with self._db.transaction() as cur:
            return select_one(
                cur, UpgradeRecord, f"SELECT {_UPGRADE} FROM system_upgrades WHERE id = %s", (upgrade_id,)
            )

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
            counts["rolled_back_by_request"] = int(one_row(cur)["n"])
            cur.execute(
                """
                SELECT count(*) AS n FROM customer_upgrade_logs
                 WHERE upgrade_id = %s AND status = 'in_progress' AND waiting_for IS NOT NULL
                """,
                (upgrade_id,),
            )
            counts["waiting_for_lease"] = int(one_row(cur)["n"])
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
    ) -> list[UpgradeRecord]:
        with self._db.transaction() as cur:
            return select(
                cur,
                UpgradeRecord,
                f"""
                SELECT {_UPGRADE} FROM system_upgrades
                 WHERE (%(component)s::text IS NULL OR component = %(component)s OR %(component)s = ANY(components))
                   AND (%(status)s::text IS NULL OR status = %(status)s)
                   AND (%(before)s::int IS NULL OR id < %(before)s)
                 ORDER BY id DESC
                 LIMIT %(limit)s
                """,
                {"component": component, "status": status, "before": before_id, "limit": limit},
            )

    def list_logs(
        self,
        upgrade_id: int,
        *,
        status: str | None,
        operation: str | None,
        customer_id: str | None,
        limit: int,
        offset: int,
    ) -> tuple[int, list[LogEntry]]:
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
            total = int(one_row(cur)["n"])
            query = (
                f"SELECT {_LOG} FROM customer_upgrade_logs WHERE {where} ORDER BY id LIMIT %(limit)s OFFSET %(offset)s"
            )
            return total, select(cur, LogEntry, query, params)

    def attempts(self, upgrade_id: int) -> list[AttemptRecord]:
        """The upgrade's executions (the first, then one per resume), oldest first."""
        with self._db.transaction() as cur:
            return select(
                cur,
                AttemptRecord,
                """
                SELECT run_name AS job_id, attempt, status, stop_reason, end_reason, requested_by,
                       created_at AS started_at, ended_at
                  FROM upgrade_runs WHERE upgrade_id = %s AND kind = 'upgrade' ORDER BY attempt, created_at
                """,
                (upgrade_id,),
            )

    def queue_counts(self) -> dict[str, int]:
        """Upgrades recorded but not yet started, and upgrades waiting at the canary gate."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE status = 'pending') AS waiting,"
                " count(*) FILTER (WHERE status = 'awaiting_continue') AS awaiting"
                " FROM system_upgrades"
            )
            row = one_row(cur)
            return {"waiting": int(row["waiting"]), "awaiting": int(row["awaiting"])}
