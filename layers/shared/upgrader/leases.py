"""One helm operation per release at a time: the per-customer lease, and what is decided under it.

Every customer's Helm release holds all four components, and real Helm refuses a second operation on
a release while one runs. So before a helm Job is created for a customer, its log row takes the
customer's lease (a row in `customer_leases`); the lease is given back in the transaction that
records the result (`RunRepository.finish_customer`), or by the reconciler when a run died.

Locks. Rows are locked in one order everywhere: the upgrade (`system_upgrades`), its run
(`upgrade_runs`), the customer's log row, the lease. Explicit row locks are FOR NO KEY UPDATE (never
FOR UPDATE): a foreign key check (FOR KEY SHARE on the referenced upgrade or log row, which an UPDATE
of a row this transaction changed before runs again) must never wait for an abort, or the two would
wait on each other.

Why an abort is airtight. A lease is taken in a transaction that first share-locks the row of its run
(`upgrade_runs`) and reads the run's `stop_reason`; the caller creates the helm Job before that
transaction commits. An abort (or a failure-budget halt) writes `stop_reason` under an exclusive lock
of the same row. The two serialize: a lease transaction that got the share lock first has created its
Job before the abort can commit; one that comes after the abort committed reads the stop reason and
creates nothing. So once `POST /abort` has answered, no Job is created for a customer that had not
taken its lease before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from upgrader.db import Database, Row
from upgrader.errors import LogRowNotFound
from upgrader.planner import tolerated_failures

LeaseState = Literal["acquired", "held", "busy", "final"]
FINAL_LOG_STATUSES = ("completed", "failed", "skipped", "rolled_back")


@dataclass
class LeaseSession:
    """What a worker sees inside the lease transaction, and the writes it may make there."""

    cur: psycopg.Cursor[Row]
    state: LeaseState
    row: Row  # the customer's log row (locked), with the upgrade's parameters
    run: Row  # its run (share-locked): stop_reason is the abort flag
    holder: Row | None  # busy: the lease of the other operation

    @property
    def log_id(self) -> int:
        return int(self.row["id"])

    @property
    def stop_reason(self) -> str | None:
        return self.run["stop_reason"]

    def budget_exceeded(self) -> str | None:
        """The failure budget of this customer's wave in its run, re-checked before helm (upgrade rows only).

        A resumed upgrade's run starts with a fresh budget: the operator chose to go on.
        """
        if self.row["operation"] != "upgrade":
            return None
        self.cur.execute(
            """
            SELECT count(*) AS size,
                   count(*) FILTER (WHERE status IN ('failed', 'rolled_back')) AS failed
              FROM customer_upgrade_logs
             WHERE run_name = %s AND wave = %s
            """,
            (self.row["run_name"], self.row["wave"]),
        )
        counts = self.cur.fetchone() or {"size": 0, "failed": 0}
        parameters = self.row["upgrade_parameters"] or {}
        allowed = tolerated_failures(
            self.row["strategy"], int(self.row["wave"]), int(counts["size"]), parameters.get("failureThreshold")
        )
        if int(counts["failed"]) > allowed:
            return budget_reason(int(self.row["wave"]), int(self.row["total_waves"]), int(counts["failed"]),
                                 int(counts["size"]), allowed)  # fmt: skip
        return None

    def upgraded_row(self) -> Row | None:
        """A rollback row's upgrade row: what that upgrade recorded from the release."""
        if self.row["rollback_of"] is None:
            return None
        self.cur.execute("SELECT * FROM customer_upgrade_logs WHERE id = %s", (self.row["rollback_of"],))
        return self.cur.fetchone()

    def skip(self, reason: str) -> None:
        """This customer is not started (or not upgraded after a recovery): skipped, lease given back."""
        self.cur.execute(
            """
            UPDATE customer_upgrade_logs SET status = 'skipped', completed_at = NOW(), updated_at = NOW(),
                   started_at = COALESCE(started_at, NOW()), waiting_for = NULL, error = %s
             WHERE id = %s AND status IN ('pending', 'in_progress')
            """,
            (reason, self.log_id),
        )
        self.give_back()

    def give_back(self) -> None:
        self.cur.execute("DELETE FROM customer_leases WHERE log_id = %s", (self.log_id,))

    def wait(self, why: str) -> None:
        """Another operation holds the release: say so on the row (status shows it), take nothing."""
        self.cur.execute(
            "UPDATE customer_upgrade_logs SET waiting_for = %s, updated_at = NOW() WHERE id = %s",
            (why, self.log_id),
        )

    def record_plan(
        self, *, revision_before: int | None, version_before: str | None, chart_version: str | None,
        note: str | None = None,
    ) -> None:  # fmt: skip
        """What the release held before this helm operation, read from the release itself."""
        self.cur.execute(
            """
            UPDATE customer_upgrade_logs SET revision_before = %s, version_before = %s,
                   chart_version = COALESCE(%s, chart_version), waiting_for = NULL, updated_at = NOW(),
                   output = CASE WHEN %s::text IS NULL THEN output ELSE concat_ws(E'\n', output, %s::text) END
             WHERE id = %s
            """,
            (revision_before, version_before, chart_version, note, note, self.log_id),
        )

    def record_job(self, job_name: str, note: str | None = None) -> None:
        self.cur.execute(
            """
            UPDATE customer_upgrade_logs SET job_name = %s, waiting_for = NULL, updated_at = NOW(),
                   output = CASE WHEN %s::text IS NULL THEN output ELSE concat_ws(E'\n', output, %s::text) END
             WHERE id = %s
            """,
            (job_name, note, note, self.log_id),
        )


def budget_reason(wave: int, total_waves: int, failed: int, size: int, allowed: int) -> str:
    return f"wave {wave + 1} of {total_waves}: {failed} of {size} customers failed (tolerated: {allowed})"


def describe_holder(holder: Row | None) -> str:
    if holder is None:
        return "release busy: its lease is changing hands"
    what = "rollback" if holder["operation"] == "rollback" else f"upgrade of {holder['component']}"
    return (
        f"release busy: {what} (upgrade {holder['upgrade_id']}, run {holder['run_name']}) holds it "
        f"since {holder['acquired_at']:%Y-%m-%dT%H:%M:%SZ}"
    )


class LeaseRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def session(self, log_id: int) -> Iterator[LeaseSession]:
        """Open the lease transaction of one log row: take the customer's lease when it is free.

        state: acquired (taken now), held (this row held it already: a retry, or the next helm
        operation of the same customer), busy (another operation holds it), final (the row is done).
        Everything the caller writes through the session commits with the lease, or not at all.
        """
        with self._db.transaction() as cur:
            cur.execute("SELECT run_name FROM customer_upgrade_logs WHERE id = %s", (log_id,))
            found = cur.fetchone()
            if found is None:
                raise LogRowNotFound(f"customer log row {log_id} not found")
            # Lock order: run (share) -> log row -> lease. See the module docstring.
            cur.execute("SELECT * FROM upgrade_runs WHERE run_name = %s FOR SHARE", (found["run_name"],))
            run = cur.fetchone() or {"run_name": found["run_name"], "stop_reason": None, "kind": None}
            cur.execute(
                """
                SELECT l.*, u.parameters AS upgrade_parameters, u.strategy, u.total_waves,
                       u.chart_version AS upgrade_chart_version
                  FROM customer_upgrade_logs l JOIN system_upgrades u ON u.id = l.upgrade_id
                 WHERE l.id = %s FOR NO KEY UPDATE OF l
                """,
                (log_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise LogRowNotFound(f"customer log row {log_id} not found")
            if row["status"] in FINAL_LOG_STATUSES:
                yield LeaseSession(cur, "final", row, run, None)
                return
            state, holder = self._take(cur, row)
            yield LeaseSession(cur, state, row, run, holder)

    @staticmethod
    def _take(cur: psycopg.Cursor[Row], row: Row) -> tuple[LeaseState, Row | None]:
        # Another lease transaction of this customer still open (its helm Job being created)? Then the
        # release is busy: look again later rather than wait on its uncommitted lease row.
        cur.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 727002)) AS free", (row["customer_id"],))
        if not (cur.fetchone() or {}).get("free"):
            cur.execute("SELECT * FROM customer_leases WHERE customer_id = %s", (row["customer_id"],))
            holder = cur.fetchone()
            if holder is not None and holder["log_id"] == row["id"]:
                return "held", None
            return "busy", holder
        for _ in range(2):  # the holder may give it back between our insert and our look
            cur.execute(
                """
                INSERT INTO customer_leases (customer_id, log_id, upgrade_id, run_name, operation, component)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (customer_id) DO NOTHING RETURNING log_id
                """,
                (row["customer_id"], row["id"], row["upgrade_id"], row["run_name"], row["operation"],
                 row["component"]),
            )  # fmt: skip
            if cur.fetchone() is not None:
                return "acquired", None
            cur.execute("SELECT * FROM customer_leases WHERE customer_id = %s FOR UPDATE", (row["customer_id"],))
            holder = cur.fetchone()
            if holder is not None:
                return ("held", None) if holder["log_id"] == row["id"] else ("busy", holder)
        return "busy", None

    def holder_of(self, customer_id: str) -> Row | None:
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM customer_leases WHERE customer_id = %s", (customer_id,))
            return cur.fetchone()

    def leases(self) -> list[dict[str, Any]]:
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM customer_leases ORDER BY customer_id")
            return cur.fetchall()
