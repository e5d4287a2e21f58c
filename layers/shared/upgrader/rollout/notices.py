"""Customer notices: told a configurable time before a customer's planned start, then told it was done
(upgraded or rolled back, written with the result: `events.customer_outcome`), or that it was cancelled
(a stop reached the upgrade before the customer started: an abort, a halt, the end of its run; written
with the stop: `events.cancel_notices`).

A customer's planned start comes from the plan and its maintenance window: once its wave is reached
(the first wave, or a later one that has started), it starts at once, or, when its upgrade respects
maintenance windows, when `upgrader.rollout.windows.decide` lets it (the next opening with room for the expected
duration; never, when the window does not fit before the deadline). `upcoming` runs with each publisher
drain (every few seconds) and writes each notice once per row and run (`events.notice_key`: a resumed
customer is told again), in a transaction that reads the row it announces.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from upgrader.infra.db import Database
from upgrader.infra.timestamps import iso
from upgrader.notifications import events
from upgrader.rollout import windows


def planned_start(window: Mapping[str, Any] | None, parameters: Mapping[str, Any], now: datetime) -> datetime | None:
    """When a customer whose wave is reached starts: now, or, with maintenance windows respected, when its
    window lets it (`windows.decide`); None when it will not start (its window does not fit)."""
    if not window or not parameters.get("respectWindows"):
        return now
    expected, deadline = windows.policy(parameters)
    decision = windows.decide(window, now, expected=expected, deadline=deadline)
    if decision.action == "skip":
        return None
    return decision.at or now


# The customers whose wave is reached and who were not told yet in their current run. The upgrade's row
# is read FOR SHARE: a stop (abort, halt) holds it FOR NO KEY UPDATE while it writes the stop and cancels
# the notices sent, so either the stop sees the notice written here (and cancels it), or this drain does
# not tell that upgrade's customers now. SKIP LOCKED: an upgrade whose row is being changed (a stop, a
# customer's result) is left to the next drain, seconds later, rather than waited for (an abort may wait
# for the lease transactions at its stop gate), and a customer started meanwhile is told at its start.
_UNTOLD = f"""
SELECT l.id, {events.notice_key("upcoming")} AS key, c.maintenance_window, u.parameters
  FROM customer_upgrade_logs l
  JOIN system_upgrades u ON u.id = l.upgrade_id
  LEFT JOIN customers c ON c.id = l.customer_id
 WHERE l.operation = 'upgrade' AND l.status = 'pending' AND l.left_out IS NULL
   AND u.status IN ('pending', 'in_progress', 'awaiting_continue') AND u.halt_reason IS NULL
   AND (l.wave = 0 OR (u.current_wave IS NOT NULL AND l.wave <= u.current_wave))
   AND NOT EXISTS (SELECT 1 FROM event_outbox o WHERE o.event_key = {events.notice_key("upcoming")})
 ORDER BY l.id LIMIT %s
   FOR SHARE OF u SKIP LOCKED
"""


class NoticeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def upcoming(self, lead_seconds: int, now: datetime | None = None, limit: int = 500) -> int:
        """Write the upcoming-change notice of every customer whose planned start is within `lead_seconds`."""
        now = now or datetime.now(UTC)
        written = 0
        with self._db.transaction() as cur:
            cur.execute(_UNTOLD, (limit,))
            for row in cur.fetchall():
                window = row["maintenance_window"]
                planned = planned_start(window, row["parameters"] or {}, now)
                if planned is None or (planned - now).total_seconds() > lead_seconds:
                    continue
                notice = {"plannedStart": iso(planned), "leadSeconds": lead_seconds, "window": window}
                written += events.customer_event(cur, events.NOTICE_UPCOMING, int(row["id"]), str(row["key"]),
                                                 {"notice": notice})  # fmt: skip
        return written
