"""One helm operation per release at a time: the per-customer lease, and what is decided under it.

Every customer's Helm release holds all four components, and real Helm refuses a second operation on
a release while one runs. So before a helm Job is created for a customer, its log row takes the
customer's lease (a row in `customer_leases`); the lease is given back in the transaction that
records the result (`RunRepository.finish_customer`), or by the reconciler when a run died.

Locks. Taken in one order everywhere: the upgrade (`system_upgrades`), its runs' stop gates, its
runs' rows (`upgrade_runs`), the customer's log row, the lease. Explicit row locks are FOR NO KEY UPDATE (never
FOR UPDATE): a foreign key check (FOR KEY SHARE on the referenced upgrade or log row, which an UPDATE
of a row this transaction changed before runs again) must never wait for an abort, or the two would
wait on each other.

Why an abort is airtight. Each run has a stop gate: a PostgreSQL advisory lock keyed by the run's
name. A lease is taken in a transaction that first takes the gate SHARED and then reads the run's
`stop_reason`; the caller creates the helm Job before that transaction commits. An abort (or a halt
by the failure budget) takes the gate EXCLUSIVELY, writes `stop_reason` and commits. The lock manager
queues requests in order, so the abort waits only for the lease transactions already inside (each
has created its Job before the abort can commit) and every lease transaction that comes later waits
for the abort and then reads its stop reason: it creates nothing. So once `POST /abort` has answered,
no Job is created for a customer that had not taken its lease before. (A row lock would not do: a
stream of share lockers can starve an exclusive one.)

A halt is as airtight: every halt (`halts.halt`) closes the gates of the runs it stops before it
writes their stop reason, so once it has committed no lease transaction that read no stop is still
creating a Job. A failure-budget halt is found by the transaction that records a failure
(`RunRepository.finish_customer`), which holds that customer's log row and the upgrade's row when it
takes the gates: out of the order above, and safe, because a lease transaction inside the gate waits
for nothing but its own log row (its foreign key checks take KEY SHARE locks, which NO KEY UPDATE
does not block). The one wait cycle left is a lease transaction of the very row being recorded (a
stopped child's Lambda still running), as for an abort: PostgreSQL fails one of the two, which is
retried (DatabaseUnavailable), nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from upgrader.infra.db import Database, Row, columns, select_one
from upgrader.infra.errors import LogRowNotFound
from upgrader.infra.timestamps import iso_seconds
from upgrader.rollout.failure_budget import WaveBudget
from upgrader.rollout.run_records import LeaseHolder, LeaseRead, LogRecord, UpgradedLog

LeaseState = Literal["acquired", "held", "busy", "final"]
FINAL_LOG_STATUSES = ("completed", "failed", "skipped", "rolled_back")


@dataclass
class LeaseSession:
    """What a worker sees inside the lease transaction, and the writes it may make there.

    The row carries what the transaction read in one statement, after passing the run's stop gate:
    the log row (locked), its upgrade's parameters, the run's stop_reason, its wave's size and
    failures (the budget), the customer's maintenance window (decided again right before helm: see
    `upgrader.rollout.orchestration.start_helm_job`), the current lease holder, and for a rollback row what its upgrade row
    recorded (`upgraded_*`), and the component's typical helm duration (`typical_helm_seconds`: the
    median of its last 20 successful operations of the same kind). What the worker records goes out
    in one UPDATE.
    """

    cur: psycopg.Cursor[Row]
    state: LeaseState
    row: LeaseRead  # the customer's log row (locked), with what the session read along with it
    holder: LeaseHolder | None  # busy: the lease of the other operation
    _plan: dict[str, Any] | None = None

    @property
    def log_id(self) -> int:
        return self.row.id

    @property
    def stop_reason(self) -> str | None:
        return self.row.stop_reason

    def budget_exceeded(self) -> str | None:
        """The failure budget of this customer's wave in its run, re-checked before helm (upgrade rows only).

        A resumed upgrade's run starts with a fresh budget: the operator chose to go on.
        """
        row = self.row
        if row.operation != "upgrade":
            return None
        budget = WaveBudget(row.strategy, row.wave, row.wave_size, row.wave_failed,
                            row.parameters.get("failureThreshold"))  # fmt: skip
        return budget.reason(row.total_waves) if budget.exceeded else None

    def upgraded_row(self) -> UpgradedLog | None:
        """A rollback row's upgrade row: what that upgrade recorded from the release."""
        return self.row.upgraded

    def skip(self, reason: str) -> None:
        """This customer is not started (or not upgraded after a recovery): skipped, lease given back."""
        self._plan = None
        self.cur.execute(
            """
            WITH skipped AS (
                UPDATE customer_upgrade_logs SET status = 'skipped', completed_at = NOW(), updated_at = NOW(),
                       started_at = COALESCE(started_at, NOW()), waiting_for = NULL, error = %s
                 WHERE id = %s AND status IN ('pending', 'in_progress')
            )
            DELETE FROM customer_leases WHERE log_id = %s
            """,
            (reason, self.log_id, self.log_id),
        )

    def defer(self, until: datetime) -> None:
        """Its maintenance window closed while it waited (for a concurrency slot, the lease or the
        Kubernetes API): back to `pending` until its next opening `until`, nothing started, the lease
        given back; a later slice of its wave starts it (`upgrader.rollout.windows`)."""
        self._plan = None
        self.cur.execute(
            """
            WITH deferred AS (
                UPDATE customer_upgrade_logs SET status = 'pending', started_at = NULL, waiting_for = NULL,
                       window_opens_at = %s, updated_at = NOW()
                 WHERE id = %s AND status IN ('pending', 'in_progress')
            )
            DELETE FROM customer_leases WHERE log_id = %s
            """,
            (until.astimezone(UTC).replace(tzinfo=None), self.log_id, self.log_id),
        )

    def give_back(self) -> None:
        self.cur.execute("DELETE FROM customer_leases WHERE log_id = %s", (self.log_id,))

    def wait(self, why: str) -> None:
        """Another operation holds the release: say so on the row (status shows it), take nothing."""
        self._plan = None
        self.cur.execute(
            "UPDATE customer_upgrade_logs SET waiting_for = %s, updated_at = NOW() WHERE id = %s",
            (why, self.log_id),
        )

    def record_plan(
        self, *, revision_before: int | None, version_before: str | None, chart_version: str | None,
        note: str | None = None, components_before: Mapping[str, str | None] | None = None,
    ) -> None:  # fmt: skip
        """What the release held before this helm operation, read from the release itself (written with
        the Job's name by `record_job`, or when the session ends); a train's row: each component's `before`."""
        self._plan = {"revision": revision_before, "version": version_before, "chart": chart_version, "note": note,
                      "components": dict(components_before) if components_before else None}  # fmt: skip

    def record_job(self, job_name: str | None, note: str | None = None) -> None:
        """Remember the customer's current Job (and the plan, if one was recorded), in one UPDATE."""
        plan, self._plan = self._plan, None
        notes = "\n".join(n for n in ((plan or {}).get("note"), note) if n) or None
        self.cur.execute(
            """
            UPDATE customer_upgrade_logs SET job_name = COALESCE(%(job)s, job_name), waiting_for = NULL,
                   updated_at = NOW(),
                   revision_before = CASE WHEN %(planned)s THEN %(revision)s ELSE revision_before END,
                   version_before = CASE WHEN %(planned)s THEN %(version)s ELSE version_before END,
                   chart_version = COALESCE(%(chart)s, chart_version),
                   components = CASE WHEN %(before)s::jsonb IS NULL OR components IS NULL THEN components
                                     ELSE (SELECT jsonb_object_agg(e.key, e.value || jsonb_build_object(
                                                      'before', %(before)s::jsonb -> e.key))
                                             FROM jsonb_each(components) e) END,
                   output = CASE WHEN %(note)s::text IS NULL THEN output ELSE concat_ws(E'\n', output, %(note)s::text) END
             WHERE id = %(id)s
            """,
            {"job": job_name, "planned": plan is not None, "revision": (plan or {}).get("revision"),
             "version": (plan or {}).get("version"), "chart": (plan or {}).get("chart"), "note": notes,
             "before": None if (plan or {}).get("components") is None else Jsonb((plan or {})["components"]),
             "id": self.log_id},
        )  # fmt: skip

    def _flush(self) -> None:
        if self._plan is not None:
            self.record_job(None)


# The advisory lock key of a run's stop gate, from its name (the second seed keeps it apart from
# other advisory locks of the product: migrations 727001, lease hand-over 727002).
STOP_GATE = "hashtextextended(%s, 727003)"


def describe_holder(holder: LeaseHolder | None) -> str:
    if holder is None:
        return "release busy: its lease is changing hands"
    what = "rollback" if holder.operation == "rollback" else f"upgrade of {holder.component}"
    return (
        f"release busy: {what} (upgrade {holder.upgrade_id}, run {holder.run_name}) holds it "
        f"since {iso_seconds(holder.acquired_at)}"
    )


# The log row (locked), everything decided under the lease, and the lease itself when it is free, in one
# statement. The lease is taken (inserted) only when no one holds it, the row is not final, and no other
# lease transaction of this customer is open right now (its insert not committed yet: the hand-over
# lock 727002 is held): then the release is busy, look again later rather than wait on it. The CASE
# keeps the try-lock from being taken for a row that does not insert.
_SESSION_READ = f"""
WITH s AS (
SELECT {columns(LogRecord, "l")}, u.parameters AS upgrade_parameters, u.strategy, u.total_waves, u.chart_version AS upgrade_chart_version,
       r.stop_reason, cw.maintenance_window,
       (SELECT count(*) FROM customer_upgrade_logs w WHERE w.run_name = l.run_name AND w.wave = l.wave) AS wave_size,
       (SELECT count(*) FROM customer_upgrade_logs w
         WHERE w.run_name = l.run_name AND w.wave = l.wave AND w.status IN ('failed', 'rolled_back')) AS wave_failed,
       c.log_id AS holder_log_id, c.upgrade_id AS holder_upgrade_id, c.run_name AS holder_run_name,
       c.operation AS holder_operation, c.component AS holder_component, c.acquired_at AS holder_acquired_at,
       up.version_before AS upgraded_version_before, up.version_after AS upgraded_version_after,
       up.revision_before AS upgraded_revision_before, up.revision_after AS upgraded_revision_after,
       (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY recent.helm_seconds)
          FROM (SELECT h.helm_seconds FROM customer_upgrade_logs h
                 WHERE h.component = l.component AND h.operation = l.operation AND h.helm_seconds IS NOT NULL
                 ORDER BY h.id DESC LIMIT 20) recent) AS typical_helm_seconds
  FROM customer_upgrade_logs l
  JOIN system_upgrades u ON u.id = l.upgrade_id
  LEFT JOIN upgrade_runs r ON r.run_name = l.run_name
  LEFT JOIN customer_leases c ON c.customer_id = l.customer_id
  LEFT JOIN customers cw ON cw.id = l.customer_id
  LEFT JOIN customer_upgrade_logs up ON up.id = l.rollback_of
 WHERE l.id = %s
   FOR NO KEY UPDATE OF l
), taken AS (
    INSERT INTO customer_leases (customer_id, log_id, upgrade_id, run_name, operation, component)
    SELECT s.customer_id, s.id, s.upgrade_id, s.run_name, s.operation, s.component FROM s
     WHERE CASE WHEN s.holder_log_id IS NULL AND s.status <> ALL(%s)
                THEN pg_try_advisory_xact_lock(hashtextextended(s.customer_id, 727002)) ELSE false END
    ON CONFLICT (customer_id) DO NOTHING RETURNING log_id
)
SELECT s.*, EXISTS (SELECT 1 FROM taken) AS lease_taken FROM s
"""


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
        # Pipelined: BEGIN, the gate and the read go out together (one round trip), what the caller
        # records goes out with the COMMIT (one more).
        with self._db.transaction(pipeline=True) as cur:
            # 1. The run's stop gate, shared (see the module docstring). Its own statement: what follows
            #    must read with a snapshot taken after the gate was passed (statements run in order, and
            #    each takes its snapshot when it starts, after the one before has taken the gate).
            #    On a cursor of its own: in pipeline mode its result may arrive while the next statement is
            #    sent, and must not become that statement's.
            cur.connection.execute(
                f"SELECT pg_advisory_xact_lock_shared({STOP_GATE.replace('%s', 'run_name')}) AS gate"
                " FROM customer_upgrade_logs WHERE id = %s",
                (log_id,),
            )
            # 2. The log row (locked), everything decided under the lease, and the lease when it is free.
            row = select_one(cur, LeaseRead, _SESSION_READ, (log_id, list(FINAL_LOG_STATUSES)))
            if row is None:
                raise LogRowNotFound(f"customer log row {log_id} not found")
            if row.status in FINAL_LOG_STATUSES:
                session = LeaseSession(cur, "final", row, None)
            else:
                state, holder = self._state(row)
                session = LeaseSession(cur, state, row, holder)
            yield session
            session._flush()

    @staticmethod
    def _state(row: LeaseRead) -> tuple[LeaseState, LeaseHolder | None]:
        """3. The lease: taken now, already ours, or someone else's (or changing hands: busy, no holder)."""
        if row.lease_taken:
            return "acquired", None
        holder = row.holder
        if holder is not None:
            return ("held", None) if holder.log_id == row.id else ("busy", holder)
        return "busy", None

    def note_waiting(self, log_id: int, why: str) -> None:
        """Say on the row why the customer waits (outside a lease transaction)."""
        with self._db.statement() as cur:
            cur.execute(
                "UPDATE customer_upgrade_logs SET waiting_for = %s, updated_at = NOW()"
                " WHERE id = %s AND status = 'in_progress'",
                (why, log_id),
            )
