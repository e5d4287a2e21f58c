"""Maintenance window arithmetic: time zones, daylight saving, windows too short, deadlines.
Every decision takes "now" as an argument: no clock is read, nothing sleeps."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import pytest
from upgrader.contract.models import DeployRequest
from upgrader.infra.errors import InvalidValue
from upgrader.rollout.run_records import SliceRow
from upgrader.rollout.selection import WindowPolicy, window_policy
from upgrader.rollout.windows import (
    WindowDecision,
    decide,
    next_start,
    plan_slice,
    policy,
    release_window_waits,
    stamp,
    wait_seconds,
)

if TYPE_CHECKING:
    from upgrader.infra.workflow import WorkflowGateway

BERLIN_SAT = {"timezone": "Europe/Berlin", "days": ["sat"], "start": "02:00", "durationMinutes": 120}
TOKYO_WEEKDAYS = {"timezone": "Asia/Tokyo", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "03:00",
                  "durationMinutes": 60}  # fmt: skip
NY_SUN = {"timezone": "America/New_York", "days": ["sun"], "start": "01:30", "durationMinutes": 120}
FIFTEEN = timedelta(minutes=15)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_window_opens_at_local_time_in_its_zone():
    # Friday 2026-03-20 12:00 UTC: Berlin is UTC+1 (winter), so Saturday 02:00 local is 01:00 UTC
    assert next_start(BERLIN_SAT, utc("2026-03-20T12:00:00"), FIFTEEN) == utc("2026-03-21T01:00:00")
    # Tokyo (UTC+9, no daylight saving): Monday 03:00 local is Sunday 18:00 UTC
    assert next_start(TOKYO_WEEKDAYS, utc("2026-03-21T12:00:00"), FIFTEEN) == utc("2026-03-22T18:00:00")


def test_inside_the_window_a_customer_starts_now_while_the_duration_fits():
    now = utc("2026-03-21T02:00:00")  # Saturday 03:00 in Berlin: one hour left of the window
    assert next_start(BERLIN_SAT, now, timedelta(minutes=60)) == now
    # 61 minutes no longer fit: the next Saturday's window (the day before the change to summer time)
    assert next_start(BERLIN_SAT, now, timedelta(minutes=61)) == utc("2026-03-28T01:00:00")


def test_daylight_saving_moves_the_opening_in_utc():
    """Europe changes to summer time on Sunday 2026-03-29: the Saturday window before it opens at 01:00
    UTC, the one after at 00:00 UTC, both at 02:00 on the Berlin clock."""
    before = next_start(BERLIN_SAT, utc("2026-03-27T12:00:00"), FIFTEEN)
    after = next_start(BERLIN_SAT, utc("2026-03-29T12:00:00"), FIFTEEN)
    assert (before, after) == (utc("2026-03-28T01:00:00"), utc("2026-04-04T00:00:00"))
    assert before is not None and after is not None and after - before == timedelta(days=7, hours=-1)


def test_a_window_across_the_change_lasts_its_real_minutes():
    """New York falls back on Sunday 2026-11-01 at 02:00 (EDT -> EST): a window from 01:30 for 120 minutes
    lasts 120 elapsed minutes, though the wall clock shows 01:30 twice."""
    opening = next_start(NY_SUN, utc("2026-10-31T12:00:00"), FIFTEEN)
    assert opening is not None and opening == utc("2026-11-01T05:30:00")  # 01:30 EDT (UTC-4), the first of the two
    last_fitting = opening + timedelta(minutes=105)
    assert next_start(NY_SUN, last_fitting, FIFTEEN) == last_fitting
    assert next_start(NY_SUN, last_fitting + timedelta(seconds=1), FIFTEEN) == utc("2026-11-08T06:30:00")


def test_a_window_too_short_for_the_expected_duration_never_fits():
    decision = decide(BERLIN_SAT, utc("2026-03-21T01:30:00"), expected=timedelta(minutes=150),
                      deadline=utc("2026-12-31T00:00:00"))  # fmt: skip
    assert decision.action == "skip" and "shorter than the expected 150 min" in str(decision.reason)


def test_a_window_that_does_not_open_before_the_deadline_skips_the_customer():
    now = utc("2026-03-21T12:00:00")  # just after a Saturday window
    decision = decide(BERLIN_SAT, now, expected=FIFTEEN, deadline=now + timedelta(days=3))
    assert decision.action == "skip"
    assert "before the deadline 2026-03-24T12:00:00.000Z" in str(decision.reason)
    assert "next fitting start 2026-03-28T01:00:00.000Z" in str(decision.reason)
    waiting = decide(BERLIN_SAT, now, expected=FIFTEEN, deadline=now + timedelta(days=10))
    assert (waiting.action, waiting.at) == ("wait", utc("2026-03-28T01:00:00"))


def test_no_window_starts_at_once():
    assert decide(None, utc("2026-03-21T12:00:00"), expected=FIFTEEN, deadline=utc("2026-03-22T00:00:00")).action == (
        "start"
    )


def test_the_wait_state_gets_whole_seconds_never_early():
    assert stamp(utc("2026-03-28T00:00:00")) == "2026-03-28T00:00:00Z"
    assert stamp(utc("2026-03-28T00:00:00.250000")) == "2026-03-28T00:00:01Z"


def test_the_window_wait_times_out_at_the_opening_or_at_the_recheck():
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    assert wait_seconds(now + timedelta(hours=2), now) == 7200
    assert wait_seconds(now + timedelta(seconds=0.2), now) == 1  # whole seconds, up: never before the opening
    assert wait_seconds(now + timedelta(days=3), now) == 86_400  # a day's re-check at most
    assert wait_seconds(now + timedelta(days=3), now, recheck=1) == 1
    assert wait_seconds(now - timedelta(minutes=1), now) == 1  # Step Functions needs a positive timeout


def test_a_slice_holds_the_customers_that_may_start_now_and_records_when_the_others_may():
    """Breakage tried: `plan_slice` deciding only rows that have a window recorded (not every pending row):
    the customer with a closed window and nothing recorded yet was in the slice, caught by `ready`."""
    now, deadline = utc("2026-03-20T12:00:00"), utc("2026-04-01T00:00:00")
    rows = [
        SliceRow(id=1, customer_id="a", status="pending", window_opens_at=None, maintenance_window=None),
        SliceRow(id=2, customer_id="b", status="pending", window_opens_at=None, maintenance_window=BERLIN_SAT),
        SliceRow(id=3, customer_id="c", status="pending", window_opens_at=utc("2026-03-20T11:00:00"),
                 maintenance_window={"timezone": "UTC", "days": ["fri"], "start": "11:00", "durationMinutes": 120}),
        SliceRow(id=4, customer_id="d", status="pending", window_opens_at=None,
                 maintenance_window={"timezone": "UTC", "days": ["fri"], "start": "11:00", "durationMinutes": 10}),
        SliceRow(id=5, customer_id="e", status="in_progress", window_opens_at=None, maintenance_window=BERLIN_SAT),
    ]  # fmt: skip
    planned = plan_slice(rows, now, expected=FIFTEEN, deadline=deadline)
    assert planned.ready == [{"logId": 1, "customerId": "a"}, {"logId": 3, "customerId": "c"},
                             {"logId": 5, "customerId": "e"}]  # fmt: skip
    assert planned.waiting == {2: utc("2026-03-21T01:00:00")}
    assert list(planned.skipped) == [4] and "shorter than the expected 15 min" in planned.skipped[4]
    assert planned.opened == [3]
    assert planned.next_opening == utc("2026-03-21T01:00:00")
    assert plan_slice([], now, expected=FIFTEEN, deadline=deadline).next_opening is None


def test_a_skipped_customer_is_told_its_window_and_why_in_full():
    """The reasons a window gives for skipping a customer, word for word (what the customer's row and the
    plan show): the window described (days, start, zone, length), the expected minutes, the deadline and
    the next fitting start.

    Kills the mutants of `rollout/windows.py:77-78` (`",".join` → `"XX,XX".join`, `days = None`, the
    description's text) and `:115-117` (the words of the deadline's reason)."""
    too_short = decide(TOKYO_WEEKDAYS, utc("2026-03-21T12:00:00"), expected=timedelta(minutes=90),
                       deadline=utc("2026-12-31T00:00:00"))  # fmt: skip
    assert too_short == WindowDecision(
        "skip",
        reason="maintenance window (mon,tue,wed,thu,fri 03:00 Asia/Tokyo for 60 min) is shorter than the expected"
        " 90 min of the upgrade",
    )
    now = utc("2026-03-21T12:00:00")
    late = decide(BERLIN_SAT, now, expected=FIFTEEN, deadline=now + timedelta(days=3))
    assert late == WindowDecision(
        "skip",
        reason="maintenance window (sat 02:00 Europe/Berlin for 120 min) does not open with 15 min to spare before"
        " the deadline 2026-03-24T12:00:00.000Z; next fitting start 2026-03-28T01:00:00.000Z",
    )


def test_a_window_exactly_as_long_as_the_upgrade_fits_and_an_opening_on_the_deadline_is_in_time():
    """Kills the mutants of `rollout/windows.py:85` (`expected > length` → `>=`: a window exactly as long
    as the expected duration never fitted) and `:114` (`start > deadline` → `>=`: an opening at the
    deadline itself skipped the customer), and `:119` (`WindowDecision("start")` → `"XXstartXX"`)."""
    opening = utc("2026-03-21T01:00:00")  # Saturday 02:00 in Berlin
    assert next_start(BERLIN_SAT, opening, timedelta(minutes=120)) == opening
    assert decide(BERLIN_SAT, opening, expected=timedelta(minutes=120), deadline=opening) == WindowDecision("start")
    before = opening - timedelta(hours=3)
    assert decide(BERLIN_SAT, before, expected=FIFTEEN, deadline=opening) == WindowDecision("wait", at=opening)


def test_an_upgrade_without_a_duration_expects_fifteen_minutes_and_reads_its_deadline_in_utc():
    """Kills the mutants of `rollout/windows.py:125` (`"expectedDurationSeconds"` → `"XXexpectedDurationSecondsXX"`,
    and `or DEFAULT_EXPECTED_SECONDS` → `and ...`)."""
    deadline = datetime(2026, 4, 1, tzinfo=UTC)
    assert policy({"windowDeadline": "2026-04-01T00:00:00Z"}) == (timedelta(minutes=15), deadline)
    assert policy({"windowDeadline": "2026-04-01T00:00:00.000Z", "expectedDurationSeconds": 600}) == (
        timedelta(minutes=10),
        deadline,
    )


class _Workflow:
    """Records each wait ended; a token it cannot send (its task is gone from a broken connection) raises."""

    def __init__(self, unsendable: str) -> None:
        self.unsendable = unsendable
        self.sent: list[tuple[str, str, str]] = []

    def send_failure(self, token: str, error: str, cause: str) -> None:
        if token == self.unsendable:
            raise ConnectionError("states.example: connection reset")
        self.sent.append((token, error, cause))


def test_a_stop_ends_every_window_wait_it_can_and_counts_and_logs_the_rest(caplog):
    """`release_window_waits`: how many waits were ended is returned; a token that cannot be sent does not
    stop the others and is logged as a warning with its traceback (the wait ends at its timeout).

    Kills the mutants of `rollout/windows.py:193` (`return True` → `False`), `:195` (the warning's text,
    `exc_info=True` → `False`), `:196` (`return False` → `True`) and `:199` (`return 0` → `1`)."""
    recorder = _Workflow("t2")
    workflow = cast("WorkflowGateway", recorder)  # only send_failure is called
    with caplog.at_level(logging.WARNING, logger="upgrader.rollout.windows"):
        assert release_window_waits(["t1", "t2", "t3"], "halted", workflow=workflow, error="UpgradeHalted") == 2
    assert sorted(recorder.sent) == [("t1", "UpgradeHalted", "halted"), ("t3", "UpgradeHalted", "halted")]
    [warning] = caplog.records
    assert warning.getMessage() == "window wait not released; it ends at its timeout"
    assert warning.exc_info is not None and isinstance(warning.exc_info[1], ConnectionError)
    assert release_window_waits([], "aborted", workflow=workflow) == 0
    assert len(recorder.sent) == 2


def test_a_deadline_defaults_to_two_weeks_and_may_be_at_most_300_days_ahead():
    """Kills the mutants of `rollout/windows.py:50` (`DEFAULT_DEADLINE = timedelta(days=14)` → `15`) and
    `:51` (`MAX_DEADLINE = timedelta(days=300)` → `301`), read by `selection.window_policy`."""
    now = utc("2026-03-20T12:00:00")

    def policy_for(**extra: object) -> WindowPolicy | None:
        request = DeployRequest.model_validate({"component": "api", "version": "v1.2.0", "strategy": "all",
                                                "respectWindows": True, **extra})  # fmt: skip
        return window_policy(request, [], now)

    assert policy_for() == WindowPolicy(FIFTEEN, utc("2026-04-03T12:00:00"))
    assert policy_for(windowDeadline="2027-01-14T12:00:00Z") == WindowPolicy(FIFTEEN, utc("2027-01-14T12:00:00"))
    with pytest.raises(InvalidValue, match="at most 300 days ahead"):
        policy_for(windowDeadline="2027-01-14T12:00:01Z")
