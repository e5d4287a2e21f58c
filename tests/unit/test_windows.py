"""Maintenance window arithmetic: time zones, daylight saving, windows too short, deadlines.
Every decision takes "now" as an argument: no clock is read, nothing sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from upgrader.rollout.windows import decide, next_start, plan_slice, stamp, wait_seconds

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
        {"id": 1, "customer_id": "a", "status": "pending", "window_opens_at": None, "maintenance_window": None},
        {"id": 2, "customer_id": "b", "status": "pending", "window_opens_at": None, "maintenance_window": BERLIN_SAT},
        {"id": 3, "customer_id": "c", "status": "pending", "window_opens_at": utc("2026-03-20T11:00:00"),
         "maintenance_window": {"timezone": "UTC", "days": ["fri"], "start": "11:00", "durationMinutes": 120}},
        {"id": 4, "customer_id": "d", "status": "pending", "window_opens_at": None,
         "maintenance_window": {"timezone": "UTC", "days": ["fri"], "start": "11:00", "durationMinutes": 10}},
        {"id": 5, "customer_id": "e", "status": "in_progress", "window_opens_at": None, "maintenance_window": BERLIN_SAT},
    ]  # fmt: skip
    planned = plan_slice(rows, now, expected=FIFTEEN, deadline=deadline)
    assert planned.ready == [{"logId": 1, "customerId": "a"}, {"logId": 3, "customerId": "c"},
                             {"logId": 5, "customerId": "e"}]  # fmt: skip
    assert planned.waiting == {2: utc("2026-03-21T01:00:00")}
    assert list(planned.skipped) == [4] and "shorter than the expected 15 min" in planned.skipped[4]
    assert planned.opened == [3]
    assert planned.next_opening == utc("2026-03-21T01:00:00")
    assert plan_slice([], now, expected=FIFTEEN, deadline=deadline).next_opening is None
