"""SQL of a customer's steps in a run: claiming its row, and recording its outcome once (its row, the upgrade's
counters, the inventory, the lease given back, its events, and a halt when its wave is over budget).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from upgrader.infra.db import Database, columns, select_one
from upgrader.infra.errors import LogRowNotFound, LogRowOfAnotherUpgrade
from upgrader.infra.redaction import redact
from upgrader.notifications import events
from upgrader.rollout.halts import WindowRelease, halt_when_over_budget
from upgrader.rollout.run_records import ClaimedLog, LogRecord

_LOG = columns(LogRecord)
_CLAIMED = columns(ClaimedLog)

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
   AND (%(upgrade)s::int IS NULL OR l.upgrade_id = %(upgrade)s::int)
RETURNING l.*, x.parameters AS upgrade_parameters
), notice AS ("""
    + events.notice_at_start_insert("claimed")
    + """)
SELECT """
    + _CLAIMED
    + """ FROM claimed
"""
)


class CustomerOutcomes:
    """A customer's steps (the state machine's child: claim, record)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def claim_customer(self, log_id: int, upgrade_id: int | None = None) -> tuple[str, ClaimedLog, dict[str, Any]]:
        """Begin a customer: ('run', row) once claimed; ('done', row) when there is nothing to do.

        A customer started before the publisher's drain told it of the upcoming change is told now, in the
        same statement (`events.notice_at_start_insert`), so its notices always come in order.

        A row already finished (a duplicated or retried delivery) is never started again, and
        a customer whose run was stopped (halt, abort) before it began is skipped. One statement, in
        autocommit (a retry that finds the row final reads it with a second one).

        `upgrade_id` (the state machine's event names both): a row of another upgrade is never touched
        (`LogRowOfAnotherUpgrade`); None only for callers that took the log id from the upgrade's own rows.
        """
        with self._db.statement() as cur:
            row = select_one(
                cur, ClaimedLog, _CLAIM, {"id": log_id, "upgrade": upgrade_id, "lead": notice_lead_seconds()}
            )
            if row is None:  # already final (or unknown): nothing to do
                row = select_one(
                    cur, ClaimedLog,
                    f"SELECT {columns(LogRecord, 'l')}, u.parameters AS upgrade_parameters FROM customer_upgrade_logs l"
                    " JOIN system_upgrades u ON u.id = l.upgrade_id WHERE l.id = %s",
                    (log_id,),
                )  # fmt: skip
                if row is None:
                    raise LogRowNotFound(f"customer log row {log_id} not found")
                _same_upgrade(row, upgrade_id)
                return "done", row, row.upgrade_parameters or {}
            action = "done" if row.status == "skipped" else "run"
            return action, row, row.upgrade_parameters or {}

    def finish_customer(
        self, log_id: int, status: str, output: str | None, error: str | None,
        release: Mapping[str, Any] | None = None, *, helm_seconds: float | None = None,
        release_windows: WindowRelease | None = None, upgrade_id: int | None = None,
    ) -> tuple[bool, LogRecord]:  # fmt: skip
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
        changed, row, halted = self._finish_customer(log_id, status, output, error, release, helm_seconds, windows,
                                                     upgrade_id)  # fmt: skip
        if windows and halted and release_windows is not None:
            release_windows(windows, halted)
        return changed, row

    def _finish_customer(
        self, log_id: int, status: str, output: str | None, error: str | None,
        release: Mapping[str, Any] | None, helm_seconds: float | None, windows: list[str] | None,
        upgrade_id: int | None = None,
    ) -> tuple[bool, LogRecord, str | None]:  # fmt: skip
        """finish_customer's transaction: (changed, row, the halt's reason when it halted the upgrade)."""
        release = release or {}
        versions = {c: v for c, v in (release.get("versions") or {}).items() if v}
        may_halt = status in ("failed", "rolled_back")
        with self._db.transaction() if may_halt else self._db.statement() as cur:
            row = select_one(
                cur, LogRecord, _FINISH,
                {"status": status, "error": error, "output": output, "revision": release.get("revision"),
                 "versions": Jsonb(versions), "chart": release.get("chartVersion"), "id": log_id,
                 "helm_seconds": helm_seconds, "outcomes": events.outcome_parameter(status), "upgrade": upgrade_id},
            )  # fmt: skip
            if row is None:
                existing = select_one(
                    cur, LogRecord, f"SELECT {_LOG} FROM customer_upgrade_logs WHERE id = %s", (log_id,)
                )
                if existing is None:
                    raise LogRowNotFound(f"customer log row {log_id} not found")
                _same_upgrade(existing, upgrade_id)
                return False, existing, None
            halted = None
            if row.operation == "upgrade" and may_halt:
                halted = halt_when_over_budget(cur, row, windows)
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
                                ELSE %(versions)s::jsonb ->> component END,
           components = CASE WHEN %(revision)s::int IS NULL OR components IS NULL THEN components
                             ELSE (SELECT jsonb_object_agg(e.key, e.value || jsonb_build_object(
                                              'after', %(versions)s::jsonb -> e.key))
                                     FROM jsonb_each(components) e) END
     WHERE id = %(id)s AND status IN ('pending', 'in_progress')
       AND (%(upgrade)s::int IS NULL OR upgrade_id = %(upgrade)s::int)
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
    SELECT d.customer_id, t.component, t.version,
           CASE WHEN t.component = d.component OR d.components ? t.component THEN d.upgrade_id END, NOW()
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
SELECT {_LOG} FROM done
"""


def _same_upgrade(row: LogRecord, upgrade_id: int | None) -> None:
    if upgrade_id is not None and row.upgrade_id != upgrade_id:
        raise LogRowOfAnotherUpgrade(
            f"customer log row {row.id} belongs to upgrade {row.upgrade_id}, not to upgrade {upgrade_id}"
        )


def notice_lead_seconds() -> int:
    """How long before a planned start customers are told (NOTICE_LEAD_MINUTES)."""
    from upgrader.infra.settings import get_settings

    return int(get_settings().notice_lead_minutes) * 60
