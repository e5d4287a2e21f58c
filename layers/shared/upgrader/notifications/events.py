"""Lifecycle events, written to the outbox in the transaction of the change they describe.

Each recording function takes the cursor of that transaction: the event commits with the change or not
at all, and its payload is read by the INSERT itself (one statement), so it carries the state that
caused it. Every event has a key naming what happened (`wave-started:<run>:<wave>`); the key is unique,
so a retried worker that repeats a change writes no second event. The publisher (`upgrader.notifications.publisher`)
sends the rows and marks them sent.

Detail types and their JSON Schemas: docs/events/ (tests/events check real payloads against them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

Row = dict[str, Any]
Severity = Literal["info", "attention", "critical"]

SOURCE = "customer-upgrades"

# Detail type -> default severity (subscriptions filter on it).
UPGRADE_STARTED = "Upgrade Started"
WAVE_STARTED = "Upgrade Wave Started"
WAVE_FINISHED = "Upgrade Wave Finished"
GATE_WAITING = "Upgrade Gate Waiting"
GATE_CONTINUED = "Upgrade Gate Continued"
UPGRADE_HALTED = "Upgrade Halted"
UPGRADE_ABORTED = "Upgrade Aborted"
UPGRADE_RESUMED = "Upgrade Resumed"
RUN_RECONCILED = "Upgrade Run Reconciled"
UPGRADE_FINISHED = "Upgrade Finished"
ROLLBACK_FINISHED = "Rollback Finished"
CUSTOMER_UPGRADED = "Customer Upgraded"
CUSTOMER_FAILED = "Customer Upgrade Failed"
CUSTOMER_ROLLED_BACK = "Customer Rolled Back"
CUSTOMER_ROLLBACK_FAILED = "Customer Rollback Failed"
DRIFT_FOUND = "Customer Drift Found"
NOTICE_UPCOMING = "Customer Notice Upcoming"
NOTICE_DONE = "Customer Notice Done"
NOTICE_CANCELLED = "Customer Notice Cancelled"
ANALYSIS_PASSED = "Analysis Passed"  # the analysis gate's verdict on a wave (upgrader.rollout.analysis_verdicts)
ANALYSIS_FAILED = "Analysis Failed"
ANALYSIS_INCONCLUSIVE = "Analysis Inconclusive"
IMAGE_TAG_MOVED = "Image Tag Moved"  # a pinned tag names another digest now (upgrader.images.moves)

DETAIL_TYPES: dict[str, Severity] = {
    UPGRADE_STARTED: "info",
    WAVE_STARTED: "info",
    WAVE_FINISHED: "info",
    GATE_WAITING: "info",
    GATE_CONTINUED: "info",
    UPGRADE_HALTED: "critical",
    UPGRADE_ABORTED: "attention",
    UPGRADE_RESUMED: "info",
    RUN_RECONCILED: "attention",
    UPGRADE_FINISHED: "info",
    ROLLBACK_FINISHED: "info",
    CUSTOMER_UPGRADED: "info",
    CUSTOMER_FAILED: "attention",
    CUSTOMER_ROLLED_BACK: "attention",
    CUSTOMER_ROLLBACK_FAILED: "critical",
    DRIFT_FOUND: "attention",
    NOTICE_UPCOMING: "info",
    NOTICE_DONE: "info",
    NOTICE_CANCELLED: "info",
    ANALYSIS_PASSED: "info",
    ANALYSIS_FAILED: "critical",
    ANALYSIS_INCONCLUSIVE: "attention",
    IMAGE_TAG_MOVED: "attention",
}
CUSTOMER_NOTICES = (NOTICE_UPCOMING, NOTICE_DONE, NOTICE_CANCELLED)

_TS = 'to_char({c}, \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')'

# The upgrade as the event's transaction sees it (u = system_upgrades).
_UPGRADE_JSON = f"""jsonb_build_object(
    'upgradeId', u.id::text, 'component', u.component, 'version', u.to_version, 'fromVersion', u.from_version,
    'strategy', u.strategy, 'status', u.status, 'total', u.total_customers, 'completed', u.completed_customers,
    'failed', u.failed_customers, 'currentWave', u.current_wave, 'totalWaves', u.total_waves,
    'haltReason', u.halt_reason, 'requestedBy', u.requested_by, 'continuedBy', u.continued_by,
    'executionName', u.execution_name, 'gate', u.gate, 'components', u.parameters -> 'components',
    'startedAt', {_TS.format(c="u.started_at")}, 'completedAt', {_TS.format(c="u.completed_at")})"""

# One customer's row (l = customer_upgrade_logs).
_CUSTOMER_JSON = f"""jsonb_build_object(
    'customerId', l.customer_id, 'logId', l.id, 'operation', l.operation, 'status', l.status, 'wave', l.wave,
    'attempt', l.attempt, 'runName', l.run_name, 'fromVersion', l.from_version, 'toVersion', l.to_version,
    'versionBefore', l.version_before, 'versionAfter', l.version_after, 'error', left(l.error, 2000),
    'components', l.components,
    'startedAt', {_TS.format(c="l.started_at")}, 'completedAt', {_TS.format(c="l.completed_at")},
    'durationSeconds', round(EXTRACT(EPOCH FROM (l.completed_at - l.started_at))::numeric, 3))"""

_INSERT = """
INSERT INTO event_outbox (event_key, detail_type, severity, component, upgrade_id, customer_id, detail)
"""

_UPGRADE_EVENT = (
    _INSERT
    + f"""
SELECT %(key)s, %(type)s, %(severity)s, u.component, u.id, NULL,
       jsonb_build_object('upgrade', {_UPGRADE_JSON}) || %(extra)s::jsonb
  FROM system_upgrades u WHERE u.id = %(upgrade)s
ON CONFLICT (event_key) DO NOTHING
RETURNING id
"""
)

_CUSTOMER_EVENT = (
    _INSERT
    + f"""
SELECT %(key)s, %(type)s, %(severity)s, u.component, u.id, l.customer_id,
       jsonb_build_object('upgrade', {_UPGRADE_JSON}, 'customer', {_CUSTOMER_JSON}) || %(extra)s::jsonb
  FROM customer_upgrade_logs l JOIN system_upgrades u ON u.id = l.upgrade_id WHERE l.id = %(log)s
ON CONFLICT (event_key) DO NOTHING
RETURNING id
"""
)


def _params(detail_type: str, key: str, extra: Mapping[str, Any] | None, severity: Severity | None) -> Row:
    return {
        "key": key,
        "type": detail_type,
        "severity": severity or DETAIL_TYPES[detail_type],
        "extra": Jsonb(dict(extra or {})),
    }


def upgrade_event(
    cur: psycopg.Cursor[Row], detail_type: str, upgrade_id: int, key: str,
    extra: Mapping[str, Any] | None = None, *, severity: Severity | None = None,
) -> bool:  # fmt: skip
    """Record an upgrade-level event with the upgrade's current state. False when the key was recorded before."""
    cur.execute(_UPGRADE_EVENT, {**_params(detail_type, key, extra, severity), "upgrade": upgrade_id})
    return cur.fetchone() is not None


def customer_event(
    cur: psycopg.Cursor[Row], detail_type: str, log_id: int, key: str,
    extra: Mapping[str, Any] | None = None, *, severity: Severity | None = None,
) -> bool:  # fmt: skip
    """Record a customer-level event with its log row and its upgrade, as this transaction sees them."""
    cur.execute(_CUSTOMER_EVENT, {**_params(detail_type, key, extra, severity), "log": log_id})
    return cur.fetchone() is not None


def plain_event(
    cur: psycopg.Cursor[Row], detail_type: str, key: str, detail: Mapping[str, Any], *,
    component: str | None = None, customer_id: str | None = None, severity: Severity | None = None,
) -> bool:  # fmt: skip
    """An event about no upgrade (drift found by a sync): its detail is given whole."""
    cur.execute(
        _INSERT + " VALUES (%(key)s, %(type)s, %(severity)s, %(component)s, NULL, %(customer)s, %(extra)s)"
        " ON CONFLICT (event_key) DO NOTHING RETURNING id",
        {**_params(detail_type, key, detail, severity), "component": component, "customer": customer_id},
    )
    return cur.fetchone() is not None


# A customer's final status -> its outcome event, by operation (skipped: none).
OUTCOME_TYPES = {
    "upgrade": {"completed": CUSTOMER_UPGRADED, "failed": CUSTOMER_FAILED, "rolled_back": CUSTOMER_ROLLED_BACK},
    "rollback": {"completed": CUSTOMER_ROLLED_BACK, "failed": CUSTOMER_ROLLBACK_FAILED},
}


def _outcome_events(operation: str, status: str) -> list[tuple[str, str, Row]]:
    """(detail type, key prefix, extra) of the events a row of `operation` reaching `status` records."""
    detail_type = OUTCOME_TYPES.get(operation, OUTCOME_TYPES["rollback"]).get(status)
    if detail_type is None:
        return []
    found: list[tuple[str, str, Row]] = [(detail_type, "customer", {})]
    if status in ("completed", "rolled_back"):
        outcome = "upgraded" if detail_type == CUSTOMER_UPGRADED else "rolled_back"
        found.append((NOTICE_DONE, "notice-done", {"notice": {"outcome": outcome}}))
    return found


def customer_outcome(cur: psycopg.Cursor[Row], row: Mapping[str, Any]) -> None:
    """A customer's row just reached a final status: its event (none for skipped), and the customer's
    notice that the change is done (upgraded or rolled back). Once per row and run."""
    log_id = int(row["id"])
    suffix = f"{log_id}:{row['run_name']}:{row['attempt']}"
    for detail_type, prefix, extra in _outcome_events(str(row["operation"]), str(row["status"])):
        customer_event(cur, detail_type, log_id, f"{prefix}:{suffix}", extra)


def outcome_parameter(status: str) -> Jsonb:
    """The %(outcomes)s parameter of `outcome_insert`: the outcome events of `status`, for either operation."""
    return Jsonb([
        {"operation": operation, "type": detail_type, "severity": DETAIL_TYPES[detail_type], "prefix": prefix,
         "extra": extra, "position": position}
        for operation in OUTCOME_TYPES
        for position, (detail_type, prefix, extra) in enumerate(_outcome_events(operation, status))
    ])  # fmt: skip


def outcome_insert(rows: str, upgrades: str) -> str:
    """`customer_outcome` as a data-modifying WITH query of the statement that makes rows final: the events
    of the log rows `rows` (a WITH query returning them as changed), with their upgrade as `upgrades` (a WITH
    query returning each upgrade row as the statement leaves it). Parameter: %(outcomes)s, `outcome_parameter`.

    The rows and upgrades come from those queries' RETURNING, not from the tables: the other parts of one
    statement all see the snapshot taken before it.
    """
    return (
        _INSERT
        + f"""
SELECT e.prefix || ':' || l.id::text || ':' || COALESCE(l.run_name, 'None') || ':' || l.attempt::text,
       e.type, e.severity, u.component, u.id, l.customer_id,
       jsonb_build_object('upgrade', {_UPGRADE_JSON}, 'customer', {_CUSTOMER_JSON}) || e.extra
  FROM {rows} l
  JOIN {upgrades} u ON u.id = l.upgrade_id
  JOIN jsonb_to_recordset(%(outcomes)s::jsonb)
       AS e(operation text, type text, severity text, prefix text, extra jsonb, position int)
    ON e.operation = l.operation
 ORDER BY l.id, e.position
ON CONFLICT (event_key) DO NOTHING
"""
    )


def notice_key(kind: str, rows: str = "l") -> str:
    """The event key of a customer notice (`upcoming`, `cancelled`) of the log rows `rows`, as SQL: once per
    row and run. A resume re-points a row to a new run, so a resumed customer is told again (and told of a
    second stop again); the outcome events and `Customer Notice Done` are keyed per row, run and attempt."""
    return f"'notice-{kind}:' || {rows}.id::text || ':' || {rows}.run_name"


def notice_at_start_insert(rows: str) -> str:
    """The upcoming-change notice of every customer in `rows` (a WITH query returning log rows as the
    statement that starts them leaves them) that no drain has told yet: a customer is never started without
    it, whatever the drain's timing (its planned start is then now). Parameter: %(lead)s, the lead seconds.
    Written once per row and run (its event key is the drain's), always before the row's outcome events."""
    return (
        _INSERT
        + f"""
SELECT {notice_key("upcoming")}, '{NOTICE_UPCOMING}', '{DETAIL_TYPES[NOTICE_UPCOMING]}', u.component, u.id,
       l.customer_id,
       jsonb_build_object('upgrade', {_UPGRADE_JSON}, 'customer', {_CUSTOMER_JSON},
                          'notice', jsonb_build_object('plannedStart', {_TS.format(c="NOW()")},
                                                       'leadSeconds', %(lead)s::int, 'window', c.maintenance_window))
  FROM {rows} l
  JOIN system_upgrades u ON u.id = l.upgrade_id
  LEFT JOIN customers c ON c.id = l.customer_id
 WHERE l.operation = 'upgrade' AND l.status = 'in_progress' AND l.left_out IS NULL
ON CONFLICT (event_key) DO NOTHING
"""
    )


# The customers of an upgrade told of an upcoming change in their current run that will now not get it:
# not started (pending, or claimed without ever taking the release's lease) when a stop is written.
_CANCEL_NOTICES = (
    _INSERT
    + f"""
SELECT {notice_key("cancelled")}, '{NOTICE_CANCELLED}', '{DETAIL_TYPES[NOTICE_CANCELLED]}', u.component, u.id,
       l.customer_id,
       jsonb_build_object('upgrade', {_UPGRADE_JSON}, 'customer', {_CUSTOMER_JSON},
                          'notice', jsonb_build_object('reason', %(reason)s::text))
  FROM customer_upgrade_logs l JOIN system_upgrades u ON u.id = l.upgrade_id
 WHERE l.upgrade_id = %(upgrade)s AND l.operation = 'upgrade' AND l.left_out IS NULL
   AND (%(run)s::text IS NULL OR l.run_name = %(run)s::text)
   AND (l.status = 'pending'
        OR (l.status = 'in_progress' AND l.job_name IS NULL
            AND NOT EXISTS (SELECT 1 FROM customer_leases c WHERE c.log_id = l.id)))
   AND EXISTS (SELECT 1 FROM event_outbox o WHERE o.event_key = {notice_key("upcoming")})
 ORDER BY l.id
ON CONFLICT (event_key) DO NOTHING
RETURNING id
"""
)


def cancel_notices(cur: psycopg.Cursor[Row], upgrade_id: int, reason: str, *, run_name: str | None = None) -> int:
    """A stop (abort, halt, the end of a run that did not reach everyone) was written in this transaction:
    `Customer Notice Cancelled` to every customer of the upgrade (of `run_name` only, when given) told of an
    upcoming change in its current run that has not started it, and will not now. Once per row and run (a
    second stop of the same run adds nothing); the caller has closed the run's stop gate, or the run has
    ended, so no customer counted here starts helm afterwards. Returns how many were written."""
    cur.execute(_CANCEL_NOTICES, {"upgrade": upgrade_id, "run": run_name, "reason": reason})
    return len(cur.fetchall())


def continue_command(upgrade_id: Any) -> str:
    return f"upgrade-customers continue {upgrade_id}"


def abort_command(upgrade_id: Any) -> str:
    return f"upgrade-customers abort {upgrade_id}"
