"""Stopping an upgrade's runs, in the caller's transaction: a halt (an operator's, or the failure budget's,
decided by `failure_budget.WaveBudget` from the counts read here), an abort's events, and the maintenance-window
waits a stop takes over (`WindowRelease`). Lock order and why a stop is airtight: `upgrader.rollout.leases`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from upgrader.infra.db import Row
from upgrader.notifications import events
from upgrader.rollout.failure_budget import WaveBudget
from upgrader.rollout.leases import STOP_GATE
from upgrader.rollout.run_records import LogRecord, RunRecord

# Ends the maintenance-window waits of the runs a halt stopped, whose task tokens it took: (tokens, the
# halt's reason), called after the halt's commit (`upgrader.rollout.windows.release_window_waits`).
WindowRelease = Callable[[list[str], str], object]


def take_window_tokens(cur: psycopg.Cursor[Row], upgrade_id: int) -> list[str]:
    """The task tokens of the upgrade's running runs waiting for their customers' maintenance windows
    (WaitForWindows), cleared (taken) in the caller's transaction, which has stopped those runs (abort,
    halt: their `stop_reason` is written, their rows locked): the caller ends each wait after its commit.
    A token taken once is never sent twice, and none is stored after the stop
    (`upgrader.rollout.windows.WindowRepository.store_run_token` reads the run's row as the stop left it)."""
    cur.execute(
        """
        UPDATE upgrade_runs r SET window_token = NULL, updated_at = NOW()
          FROM (SELECT run_name, window_token FROM upgrade_runs
                 WHERE upgrade_id = %s AND status = 'running' AND window_token IS NOT NULL
                 ORDER BY run_name FOR NO KEY UPDATE) old
         WHERE r.run_name = old.run_name
        RETURNING old.window_token AS token
        """,
        (upgrade_id,),
    )
    return [r["token"] for r in cur.fetchall()]


def close_stop_gates(cur: psycopg.Cursor[Row], run_names: Sequence[str]) -> None:
    """Take each run's stop gate exclusively, in the transaction that writes its stop (see `upgrader.rollout.leases`):
    this waits for the lease transactions inside, each of which creates its Job before it commits, and every
    lease transaction that comes later waits for this one and reads the stop. In name order, so two stops
    of the same runs never wait on each other."""
    for run_name in sorted(run_names):
        cur.execute(f"SELECT pg_advisory_xact_lock({STOP_GATE})", (run_name,))


def halt(cur: psycopg.Cursor[Row], upgrade_id: int, reason: str, budget: dict[str, Any] | None = None, *,
          windows: list[str] | None = None) -> bool:  # fmt: skip
    """Set the upgrade's halt reason (first wins) and stop its running upgrade run(s) as an abort does: their
    stop gates closed first, so once this commits no lease transaction that read no stop is still creating a
    Job; then `Customer Notice Cancelled` to the customers told that will not now start (once). With
    `windows`, take the window-wait tokens of its runs into it (the caller ends those waits after the commit).

    Lock order as everywhere: the upgrade's row, then its runs' stop gates and rows, then log rows (see
    `upgrader.rollout.leases`; `finish_customer` holds its own log row already: see there).
    """
    cur.execute(
        "UPDATE system_upgrades SET halt_reason = %s, updated_at = NOW() WHERE id = %s AND halt_reason IS NULL"
        " RETURNING id, execution_name",
        (reason, upgrade_id),
    )
    halted = cur.fetchone()
    first = halted is not None
    if halted is not None:
        events.upgrade_event(cur, events.UPGRADE_HALTED, upgrade_id, f"halted:{halted['execution_name']}",
                             {"halt": {"reason": reason, "budget": budget}})  # fmt: skip
    cur.execute(
        """
        SELECT run_name FROM upgrade_runs
         WHERE upgrade_id = %s AND kind = 'upgrade' AND status = 'running' AND stop_reason IS NULL
        """,
        (upgrade_id,),
    )
    close_stop_gates(cur, [r["run_name"] for r in cur.fetchall()])
    cur.execute(
        """
        UPDATE upgrade_runs SET stop_reason = %s, updated_at = NOW()
         WHERE upgrade_id = %s AND kind = 'upgrade' AND status = 'running' AND stop_reason IS NULL
        """,
        (reason, upgrade_id),
    )
    if first:
        events.cancel_notices(cur, upgrade_id, reason)
    if windows is not None:
        windows.extend(take_window_tokens(cur, upgrade_id))
    return first


def halt_when_over_budget(cur: psycopg.Cursor[Row], row: LogRecord, windows: list[str] | None = None) -> str | None:
    """A failure was just recorded: when its wave is now over its failure budget, halt the upgrade (and
    take the window-wait tokens into `windows`, see `halt`). Returns the halt's reason, None if none.

    Only while the row's own run runs: the late outcome of a Job whose run has ended (settled by the
    reconciler) counts in that run's wave and the upgrade's counters, and never halts the upgrade, whose
    current run (a resume's) has a failure budget of its own."""
    cur.execute(
        """
        SELECT u.strategy, u.total_waves, u.parameters, r.status AS run_status, count(*) AS size,
               count(*) FILTER (WHERE l.status IN ('failed', 'rolled_back')) AS failed
          FROM customer_upgrade_logs l JOIN system_upgrades u ON u.id = l.upgrade_id
          LEFT JOIN upgrade_runs r ON r.run_name = l.run_name
         WHERE l.run_name = %s AND l.wave = %s
         GROUP BY u.strategy, u.total_waves, u.parameters, r.status
        """,
        (row.run_name, row.wave),
    )
    wave = cur.fetchone()
    if wave is None or wave["run_status"] != "running":
        return None
    budget = WaveBudget(
        wave["strategy"],
        row.wave,
        int(wave["size"]),
        int(wave["failed"]),
        (wave["parameters"] or {}).get("failureThreshold"),
    )
    if not budget.exceeded:
        return None
    reason = budget.reason(int(wave["total_waves"]))
    halt(cur, row.upgrade_id, reason, budget.as_event(), windows=windows)
    return reason


def aborted_events(
    cur: psycopg.Cursor[Row], upgrade_id: int, reason: str, aborted_by: str | None, rollback: bool,
    stopped: Sequence[RunRecord], key: str,
) -> None:  # fmt: skip
    """An abort was recorded: its event, and a cancellation to every customer told of an upcoming change
    that it will now not get (`events.cancel_notices`)."""
    events.upgrade_event(
        cur, events.UPGRADE_ABORTED, upgrade_id, key,
        {"abort": {"reason": reason, "abortedBy": aborted_by, "rollback": rollback,
                   "stoppedRuns": sorted(r.run_name for r in stopped)}},
    )  # fmt: skip
    events.cancel_notices(cur, upgrade_id, reason)
