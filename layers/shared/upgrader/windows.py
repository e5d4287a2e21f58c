"""Maintenance windows: when a customer may be changed, and the wait for it.

A window (the customer's `maintenanceWindow`: IANA `timezone`, `days`, local `start`, `durationMinutes`)
opens on each listed weekday at `start` local time, as the zone's clock says that day (daylight saving
included), and stays open for `durationMinutes` of elapsed time. A customer starts only inside its
window and only when the upgrade's expected helm duration still fits before the window closes.

The wait itself costs no Lambda time: `begin_customer` answers "wait <seconds> (until <timestamp>)" and the
child execution sleeps in a `.waitForTaskToken` task (WaitForWindow) whose Lambda only stores the token
on the customer's log row and returns; the task times out when the window opens (TimeoutSecondsPath),
then BeginCustomer asks again. A stop releases every stored token of the upgrade at once, so a
customer asleep until next week is skipped within seconds: an abort (the API), and a halt by the failure
budget (the worker that records the failure over budget: FinishCustomer, or the reconciler settling a
Job's outcome), both through `release_window_waits`. Each child waits on its own, so a customer
whose window is closed never holds the wave's others. A window that does not open
(with room for the expected duration) before the request's deadline leaves the customer `skipped` with
the reason. Every decision takes "now" as an argument: tests drive a controllable clock.
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

from upgrader.db import Database, Row
from upgrader.timestamps import iso

if TYPE_CHECKING:  # a Protocol: the Step Functions client (botocore) stays out of the workers that never call it
    from upgrader.workflow import WorkflowGateway

logger = logging.getLogger(__name__)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_EXPECTED_SECONDS = 900  # a helm upgrade plus its rollout check, unless the request says otherwise
DEFAULT_DEADLINE = timedelta(days=14)
MAX_DEADLINE = timedelta(days=300)  # an execution lasts at most a year; keep room for the waves themselves
# A waiting customer asks again at least this often (its window may have changed meanwhile); each ask
# is one short Lambda call. WINDOW_RECHECK_SECONDS overrides it (the local stack's tests use 1).
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
    """The WaitForWindow task's timeout: whole seconds until `at` (at least 1, at most `recheck`)."""
    return max(1, min(int(recheck), math.ceil((at - now).total_seconds())))


def stamp(moment: datetime) -> str:
    """A timestamp Step Functions' Wait state reads (TimestampPath): RFC 3339, UTC, whole seconds up."""
    rounded = moment.astimezone(UTC).replace(microsecond=0) + (timedelta(seconds=1) if moment.microsecond else
                                                                timedelta())  # fmt: skip
    return rounded.strftime("%Y-%m-%dT%H:%M:%SZ")


def release_window_waits(
    tokens: list[str], reason: str, *, workflow: WorkflowGateway, error: str = "UpgradeAborted", parallel: int = 8
) -> int:
    """Wake customers asleep in a maintenance-window wait, whose tokens a stop (abort: `UpgradeAborted`;
    failure-budget halt: `UpgradeHalted`) took from their rows in its transaction: each WaitForWindow
    task fails with `error`, and BeginCustomer then skips its customer with the stop's reason. A token
    already spent (its task timed out or was released) is ignored by the gateway; one that cannot be
    sent is left: its task still times out when the window opens, and BeginCustomer finds the stop then.
    Returns how many were sent."""

    def send(token: str) -> bool:
        try:
            workflow.send_failure(token, error, reason)
            return True
        except Exception:  # noqa: BLE001 - one wait not woken must not fail the stop (see above)
            logger.warning("window wait not released; it ends when its window opens", exc_info=True)
            return False

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(tokens)))) as pool:
        return sum(pool.map(send, tokens))


# -------------------------------------------------------------------------------------- repository
class WindowRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def waiting_row(self, log_id: int) -> Row | None:
        """A pending upgrade row of a run that goes on, with its customer's window and the upgrade's
        parameters; None when the row is not waiting material (already claimed, final, or halted)."""
        with self._db.transaction() as cur:
            cur.execute(
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
            )
            return cur.fetchone()

    def wait(self, log_id: int, opens_at: datetime | None) -> None:
        """Record when the customer's window opens (None: it is open now); a token of an earlier wait is
        spent (that task timed out or was released), so it is forgotten."""
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE customer_upgrade_logs SET window_opens_at = %s, window_token = NULL, updated_at = NOW()"
                " WHERE id = %s AND status = 'pending'",
                (opens_at.astimezone(UTC).replace(tzinfo=None) if opens_at else None, log_id),
            )

    def store_token(self, log_id: int, token: str) -> bool:
        """WaitForWindow's task token, kept where an abort finds it. False (nothing stored) when the
        upgrade or run was stopped meanwhile: the caller ends the wait at once.

        The upgrade's row is read FOR SHARE: an abort holds it FOR NO KEY UPDATE while it sets the halt
        and takes the tokens, so either the abort sees this token, or this sees the abort."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT u.halt_reason, r.stop_reason FROM customer_upgrade_logs l
                  JOIN system_upgrades u ON u.id = l.upgrade_id
                  LEFT JOIN upgrade_runs r ON r.run_name = l.run_name
                 WHERE l.id = %s
                   FOR SHARE OF u
                """,
                (log_id,),
            )
            found = cur.fetchone()
            if found is None or found["halt_reason"] is not None or found["stop_reason"] is not None:
                return False
            cur.execute(
                "UPDATE customer_upgrade_logs SET window_token = %s, updated_at = NOW()"
                " WHERE id = %s AND status = 'pending' RETURNING id",
                (token, log_id),
            )
            return cur.fetchone() is not None

    def skip(self, log_id: int, reason: str) -> None:
        """The window does not fit before the deadline: the customer is skipped, counted, with the reason."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE customer_upgrade_logs SET status = 'skipped', error = %s, window_opens_at = NULL,
                       window_token = NULL,
                       completed_at = NOW(), updated_at = NOW()
                 WHERE id = %s AND status = 'pending'
                """,
                (f"not started: {reason}", log_id),
            )

    def waiting(self, upgrade_id: int, limit: int = 100) -> list[Row]:
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT customer_id, window_opens_at FROM customer_upgrade_logs
                 WHERE upgrade_id = %s AND operation = 'upgrade' AND status = 'pending'
                   AND window_opens_at IS NOT NULL
                 ORDER BY window_opens_at, customer_id LIMIT %s
                """,
                (upgrade_id, limit),
            )
            return cur.fetchall()


def check_window(
    event: Mapping[str, Any], *, windows: WindowRepository, now: datetime, recheck: int = DEFAULT_RECHECK_SECONDS
) -> dict[str, Any] | None:
    """Before a customer is claimed: wait for its window, skip it, or (None) go on and claim it."""
    row = windows.waiting_row(int(event["logId"]))
    if row is None:
        return None  # claimed already, final, or the run stopped: the claim decides
    expected, deadline = policy(row["parameters"] or {})
    decision = decide(row["maintenance_window"], now, expected=expected, deadline=deadline)
    if decision.action == "skip":
        windows.skip(int(row["id"]), str(decision.reason))
        return {"action": "done", "status": "skipped", "customerId": row["customer_id"], "reason": decision.reason}
    if decision.action == "wait" and decision.at is not None:
        windows.wait(int(row["id"]), decision.at)
        return {"action": "wait", "customerId": row["customer_id"], "waitUntil": stamp(decision.at),
                "waitSeconds": wait_seconds(decision.at, now, recheck)}  # fmt: skip
    if row["window_opens_at"] is not None:
        windows.wait(int(row["id"]), None)
    return None
