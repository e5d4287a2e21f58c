"""Maintenance windows: when a customer may be changed, and how a wave waits for them.

A window (the customer's `maintenanceWindow`: IANA `timezone`, `days`, local `start`, `durationMinutes`)
opens on each listed weekday at `start` local time, as the zone's clock says that day (daylight saving
included), and stays open for `durationMinutes` of elapsed time. A customer starts only inside its
window and only when the upgrade's expected helm duration still fits before the window closes.

Waiting never holds capacity (DESIGN.md). A wave runs in slices: PrepareWave puts in the Distributed
Map's manifest only the wave's customers that may start now (`plan_slice`); a customer whose window is
closed stays `pending` with its next opening recorded (`window_opens_at`) and gets no child execution, so
it never occupies one of the Map's `maxConcurrency` slots. When the slice's Map is over and customers of
the wave still wait, the run's execution itself waits (WaitForWindows, a `.waitForTaskToken` task whose
Lambda only stores the token on the run's row) until the earliest opening, at most `recheck` seconds,
then prepares the wave's next slice: the customers whose window is open by then, again within
`maxConcurrency`. The wave is judged only when none of it waits any more.

A decision made before a wait is made again after it: the child asks again before its claim
(`check_window`, the Map may have queued it) and right before its helm Job, under the lease
(`upgrader.rollout.orchestration.start_helm_job`: after waiting for the lease or for the Kubernetes API); a
customer that no longer fits goes back to `pending` until its next opening (deferred to a later slice).
A stop ends the run's wait at once: an abort (the API) and a halt by the failure budget (the worker
that records the failure over budget: FinishCustomer, or the reconciler settling a Job's outcome) take
the run's token in their transaction and fail the task after the commit (`release_window_waits`).

A window that does not open (with room for the expected duration) before the request's deadline
leaves the customer `skipped` with the reason. Every decision takes "now" as an argument: tests drive
a controllable clock.
"""

from __future__ import annotations

import logging
import math
import zoneinfo
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from upgrader.infra.db import Database, columns, select, select_one
from upgrader.infra.timestamps import iso, iso_seconds
from upgrader.rollout.run_records import SliceRow, WaitingRow, WindowWaitRecord

if TYPE_CHECKING:  # a Protocol: the Step Functions client (botocore) stays out of the workers that never call it
    from upgrader.infra.workflow import WorkflowGateway

logger = logging.getLogger(__name__)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_EXPECTED_SECONDS = 900  # a helm upgrade plus its rollout check, unless the request says otherwise
DEFAULT_DEADLINE = timedelta(days=14)
MAX_DEADLINE = timedelta(days=300)  # an execution lasts at most a year; keep room for the waves themselves
# A run whose customers wait for their windows looks again at least this often (a window may have changed
# meanwhile); each look is one short Lambda call. WINDOW_RECHECK_SECONDS overrides it (tests use 1).
DEFAULT_RECHECK_SECONDS = 86_400


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class WindowDecision:
    """start now; wait until `at`; or skip (the window does not fit before the deadline), with why."""

    action: str  # "start", "wait", "skip"
    at: datetime | None = None
    reason: str | None = None


def describe(window: Mapping[str, Any]) -> str:
    days = ",".join(window["days"])
    return f"{days} {window['start']} {window['timezone']} for {window['durationMinutes']} min"


def next_start(window: Mapping[str, Any], now: datetime, expected: timedelta) -> datetime | None:
    """The earliest moment at or after `now` when a change taking `expected` fits inside an opening of
    the window; None when the window is shorter than `expected` (it never fits)."""
    length = timedelta(minutes=int(window["durationMinutes"]))
    if expected > length:
        return None
    zone = zoneinfo.ZoneInfo(str(window["timezone"]))
    hour, minute = (int(part) for part in str(window["start"]).split(":"))
    days = {WEEKDAYS.index(d) for d in window["days"]}
    today = now.astimezone(zone).date()
    for offset in range(-2, 9):  # an opening of yesterday (or before) may still be open now
        day = today + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        # The zone's wall clock that day (a start inside a spring-forward gap resolves as zoneinfo
        # does, fold 0): elapsed time from there, so a window across a change lasts its real minutes.
        opening = datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)
        if opening + length - expected >= now:
            return max(opening, now)
    return None  # pragma: no cover - some listed weekday comes within a week


def decide(
    window: Mapping[str, Any] | None, now: datetime, *, expected: timedelta, deadline: datetime
) -> WindowDecision:
    """What a customer with this window does now."""
    if not window:
        return WindowDecision("start")
    start = next_start(window, now, expected)
    minutes = int(expected.total_seconds() // 60)
    if start is None:
        return WindowDecision("skip", reason=f"maintenance window ({describe(window)}) is shorter than the "
                                             f"expected {minutes} min of the upgrade")  # fmt: skip
    if start > deadline:
        return WindowDecision("skip", reason=f"maintenance window ({describe(window)}) does not open with "
                                             f"{minutes} min to spare before the deadline {iso(deadline)}; "
                                             f"next fitting start {iso(start)}")  # fmt: skip
    if start <= now:
        return WindowDecision("start")
    return WindowDecision("wait", at=start)


def policy(parameters: Mapping[str, Any]) -> tuple[timedelta, datetime]:
    """(expected duration, deadline) an upgrade's parameters say."""
    expected = timedelta(seconds=int(parameters.get("expectedDurationSeconds") or DEFAULT_EXPECTED_SECONDS))
    deadline = datetime.fromisoformat(str(parameters["windowDeadline"]).replace("Z", "+00:00"))
    return expected, deadline


def wait_seconds(at: datetime, now: datetime, recheck: int = DEFAULT_RECHECK_SECONDS) -> int:
    """The WaitForWindows task's timeout: whole seconds until `at` (at least 1, at most `recheck`)."""
    return max(1, min(int(recheck), math.ceil((at - now).total_seconds())))


def stamp(moment: datetime) -> str:
    """A timestamp Step Functions' Wait state reads (TimestampPath): RFC 3339, UTC, whole seconds up."""
    rounded = moment.astimezone(UTC).replace(microsecond=0) + (timedelta(seconds=1) if moment.microsecond else
                                                                timedelta())  # fmt: skip
    return iso_seconds(rounded)


@dataclass(frozen=True)
class Slice:
    """A slice of a wave (`plan_slice`): who starts now, who waits until when, who is skipped and why."""

    ready: list[dict[str, Any]]  # manifest items {"logId", "customerId"}, in the wave's order
    waiting: dict[int, datetime]  # log id -> the next fitting opening of its window
    skipped: dict[int, str]  # log id -> why its window does not fit before the deadline
    opened: list[int]  # ready rows that had waited (their recorded opening is cleared)

    @property
    def next_opening(self) -> datetime | None:
        return min(self.waiting.values(), default=None)


def plan_slice(rows: list[SliceRow], now: datetime, *, expected: timedelta, deadline: datetime) -> Slice:
    """Split rows of a wave (id, customer_id, status, window_opens_at, maintenance_window) by their window
    now. Only `pending` rows are decided; a row in any other status is passed on as it is (its child finds
    it claimed or final, as without windows)."""
    ready: list[dict[str, Any]] = []
    waiting: dict[int, datetime] = {}
    skipped: dict[int, str] = {}
    opened: list[int] = []
    for row in rows:
        log_id = row.id
        decision = WindowDecision("start")
        if row.status == "pending":
            decision = decide(row.maintenance_window, now, expected=expected, deadline=deadline)
        if decision.action == "skip":
            skipped[log_id] = str(decision.reason)
        elif decision.action == "wait" and decision.at is not None:
            waiting[log_id] = decision.at
        else:
            ready.append({"logId": log_id, "customerId": row.customer_id})
            if row.window_opens_at is not None:
                opened.append(log_id)
    return Slice(ready, waiting, skipped, opened)


def release_window_waits(
    tokens: list[str], reason: str, *, workflow: WorkflowGateway, error: str = "UpgradeAborted", parallel: int = 8
) -> int:
    """End the waits for maintenance windows whose tokens a stop (abort: `UpgradeAborted`; failure-budget
    halt: `UpgradeHalted`) took from its runs' rows in its transaction: each WaitForWindows task fails
    with `error`, and the run's execution goes on at once (PrepareWave finds the stop, the wave is judged,
    the run ends; its waiting customers are skipped with the stop's reason). A token already spent (its
    task timed out) is ignored by the gateway; one that cannot be sent is left: its task still times out
    at the opening (or the recheck), and PrepareWave finds the stop then. Returns how many were sent."""

    def send(token: str) -> bool:
        try:
            workflow.send_failure(token, error, reason)
            return True
        except Exception:  # noqa: BLE001 - one wait not woken must not fail the stop (see above)
            logger.warning("window wait not released; it ends at its timeout", exc_info=True)
            return False

    if not tokens:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(tokens)))) as pool:
        return sum(pool.map(send, tokens))


# -------------------------------------------------------------------------------------- repository
# A wave's rows for its next slice: every row in the first slice (as without windows), afterwards only
# the pending rows that waited for their window (a row offered once and left pending by a child that
# could not record anything is not offered again: the run's end skips it).
_SLICE_ROWS = f"""
SELECT {columns(SliceRow, "l", but=("maintenance_window",))}, c.maintenance_window
  FROM customer_upgrade_logs l LEFT JOIN customers c ON c.id = l.customer_id
 WHERE l.run_name = %(run)s AND l.wave = %(wave)s
   AND (%(first)s OR (l.status = 'pending' AND l.window_opens_at IS NOT NULL))
 ORDER BY l.id
"""


class WindowRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def prepare_slice(self, run_name: str, wave: int, *, first: bool, now: datetime) -> Slice:
        """The next slice of a wave (see `plan_slice`), recorded in one transaction: each waiting row's
        next opening (what status shows), the skipped rows with their reason, the opened ones cleared.

        A token of the run's last window wait is spent by now (its task timed out or was released): it
        is forgotten. A stopped run (abort, halt) starts nobody and waits for nothing: the wave is then
        judged and the run ends, which skips its pending customers with the stop's reason."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE upgrade_runs r SET window_token = NULL FROM system_upgrades u
                 WHERE r.run_name = %s AND u.id = r.upgrade_id
                RETURNING r.stop_reason, u.parameters
                """,
                (run_name,),
            )
            run = cur.fetchone()
            if run is None or run["stop_reason"] is not None:
                return Slice([], {}, {}, [])
            expected, deadline = policy(run["parameters"] or {})
            rows = select(cur, SliceRow, _SLICE_ROWS, {"run": run_name, "wave": wave, "first": first})
            planned = plan_slice(rows, now, expected=expected, deadline=deadline)
            opens = [*planned.waiting.items(), *((log_id, None) for log_id in planned.opened)]
            if opens:
                cur.execute(
                    """
                    UPDATE customer_upgrade_logs l SET window_opens_at = t.at, updated_at = NOW()
                      FROM unnest(%s::int[], %s::timestamp[]) AS t(id, at)
                     WHERE l.id = t.id AND l.status = 'pending'
                    """,
                    ([log_id for log_id, _ in opens], [_naive(at) for _, at in opens]),
                )
            if planned.skipped:
                cur.execute(
                    """
                    UPDATE customer_upgrade_logs l SET status = 'skipped', error = 'not started: ' || t.reason,
                           window_opens_at = NULL, completed_at = NOW(), updated_at = NOW()
                      FROM unnest(%s::int[], %s::text[]) AS t(id, reason)
                     WHERE l.id = t.id AND l.status = 'pending'
                    """,
                    (list(planned.skipped), list(planned.skipped.values())),
                )
            return planned

    def waiting_in_wave(self, run_name: str, wave: int) -> int:
        """How many customers of a run's wave wait for their window (the wave is not over while any does)."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT count(*) AS n FROM customer_upgrade_logs
                 WHERE run_name = %s AND wave = %s AND status = 'pending' AND window_opens_at IS NOT NULL
                """,
                (run_name, wave),
            )
            found = cur.fetchone()
            return int(found["n"]) if found else 0

    def store_run_token(self, run_name: str, token: str) -> bool:
        """WaitForWindows' task token, kept on the run where an abort or a halt finds it. False (nothing
        stored) when the run was stopped meanwhile: the caller ends the wait at once.

        An abort and a halt write the run's `stop_reason` (and then take its token) in one transaction;
        this UPDATE waits for that row lock and reads the row as they left it: either the stop sees this
        token, or this sees the stop."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE upgrade_runs SET window_token = %s, updated_at = NOW()
                 WHERE run_name = %s AND status = 'running' AND stop_reason IS NULL
                RETURNING run_name
                """,
                (token, run_name),
            )
            return cur.fetchone() is not None

    def waiting_row(self, log_id: int) -> WaitingRow | None:
        """A pending upgrade row of a run that goes on, with its customer's window and the upgrade's
        parameters; None when the row is not waiting material (already claimed, final, or halted)."""
        with self._db.transaction() as cur:
            return select_one(
                cur, WaitingRow,
                """
                SELECT l.id, l.customer_id, l.window_opens_at, c.maintenance_window, u.parameters
                  FROM customer_upgrade_logs l
                  JOIN system_upgrades u ON u.id = l.upgrade_id
                  LEFT JOIN customers c ON c.id = l.customer_id
                  LEFT JOIN upgrade_runs r ON r.run_name = l.run_name
                 WHERE l.id = %s AND l.status = 'pending' AND l.operation = 'upgrade'
                   AND u.halt_reason IS NULL AND r.stop_reason IS NULL
                """,
                (log_id,),
            )  # fmt: skip

    def wait(self, log_id: int, opens_at: datetime | None) -> None:
        """Record when the customer's window opens next (None: it is open now)."""
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE customer_upgrade_logs SET window_opens_at = %s, updated_at = NOW()"
                " WHERE id = %s AND status = 'pending'",
                (_naive(opens_at), log_id),
            )

    def skip(self, log_id: int, reason: str) -> None:
        """The window does not fit before the deadline: the customer is skipped, with the reason."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET status = 'skipped', error = %s, window_opens_at = NULL,
                       completed_at = NOW(), updated_at = NOW()
                 WHERE id = %s AND status = 'pending'
                """,
                (f"not started: {reason}", log_id),
            )

    def waiting(self, upgrade_id: int, limit: int = 100) -> list[WindowWaitRecord]:
        with self._db.transaction() as cur:
            return select(
                cur, WindowWaitRecord,
                """
                SELECT customer_id, window_opens_at FROM customer_upgrade_logs
                 WHERE upgrade_id = %s AND operation = 'upgrade' AND status = 'pending'
                   AND window_opens_at IS NOT NULL
                 ORDER BY window_opens_at, customer_id LIMIT %s
                """,
                (upgrade_id, limit),
            )  # fmt: skip


def _naive(moment: datetime | None) -> datetime | None:
    """A timestamp column's value (UTC, without zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment else None


def check_window(event: Mapping[str, Any], *, windows: WindowRepository, now: datetime) -> dict[str, Any] | None:
    """Before a customer is claimed (its child may have been queued by the Map's concurrency since the
    slice was prepared): skip it, defer it (back to waiting: `pending` until its next opening, a later
    slice starts it), or (None) go on and claim it."""
    row = windows.waiting_row(int(event["logId"]))
    if row is None:
        return None  # claimed already, final, or the run stopped: the claim decides
    expected, deadline = policy(row.parameters or {})
    decision = decide(row.maintenance_window, now, expected=expected, deadline=deadline)
    if decision.action == "skip":
        windows.skip(row.id, str(decision.reason))
        return {"action": "done", "status": "skipped", "customerId": row.customer_id, "reason": decision.reason}
    if decision.action == "wait" and decision.at is not None:
        windows.wait(row.id, decision.at)
        return {"action": "done", "status": "pending", "customerId": row.customer_id,
                "deferredUntil": stamp(decision.at)}  # fmt: skip
    if row.window_opens_at is not None:
        windows.wait(row.id, None)
    return None
