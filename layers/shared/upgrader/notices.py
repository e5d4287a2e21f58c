"""Customer notices: told a configurable time before a customer's planned start, then told it was done
(upgraded or rolled back, written with the result: `events.customer_outcome`), or that it was cancelled
(the upgrade aborted before reaching it: written with the abort).

A customer's planned start comes from the plan and its maintenance window: once its wave is reached
(the first wave, or a later one that has started), it starts at the next opening of its window, or at
once when it has none. `upcoming` runs with each publisher drain (every few seconds) and writes each
notice once (its event key), in a transaction that reads the row it announces.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from upgrader import events
from upgrader.db import Database

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def next_window_start(window: dict[str, Any], after: datetime) -> datetime | None:
    """When the window is next open at or after `after` (aware UTC): `after` itself while it is open."""
    try:
        zone = ZoneInfo(str(window["timezone"]))
        hour, minute = (int(part) for part in str(window["start"]).split(":"))
        days = {str(d) for d in window["days"]}
        duration = timedelta(minutes=int(window["durationMinutes"]))
    except (KeyError, ValueError, TypeError, ZoneInfoNotFoundError):
        return None
    local = after.astimezone(zone)
    for offset in range(-1, 8):  # yesterday's window may still be open
        day = local.date() + timedelta(days=offset)
        if _DAYS[day.weekday()] not in days:
            continue
        opens = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if opens + duration > after:
            return max(opens, after).astimezone(UTC)
    return None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class NoticeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def upcoming(self, lead_seconds: int, now: datetime | None = None, limit: int = 500) -> int:
        """Write the upcoming-change notice of every customer whose planned start is within `lead_seconds`."""
        now = now or datetime.now(UTC)
        written = 0
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT l.id, c.maintenance_window FROM customer_upgrade_logs l
                  JOIN system_upgrades u ON u.id = l.upgrade_id
                  LEFT JOIN customers c ON c.id = l.customer_id
                 WHERE l.operation = 'upgrade' AND l.status = 'pending' AND l.left_out IS NULL
                   AND u.status IN ('pending', 'in_progress', 'awaiting_continue') AND u.halt_reason IS NULL
                   AND (l.wave = 0 OR (u.current_wave IS NOT NULL AND l.wave <= u.current_wave))
                   AND NOT EXISTS (SELECT 1 FROM event_outbox o WHERE o.event_key = 'notice-upcoming:' || l.id::text)
                 ORDER BY l.id LIMIT %s
                """,
                (limit,),
            )
            for row in cur.fetchall():
                window = row["maintenance_window"]
                planned = next_window_start(window, now) if window else now
                if planned is None or (planned - now).total_seconds() > lead_seconds:
                    continue
                notice = {"plannedStart": _stamp(planned), "leadSeconds": lead_seconds, "window": window}
                written += events.customer_event(cur, events.NOTICE_UPCOMING, int(row["id"]),
                                                 f"notice-upcoming:{row['id']}", {"notice": notice})  # fmt: skip
        return written
