"""The first wait on a running helm Job: the component's typical duration, else the poll interval."""

from __future__ import annotations

from upgrader.rollout.orchestration import FIRST_LOOK_MARGIN_SECONDS, MAX_FIRST_WAIT_SECONDS, first_wait_seconds


def test_nothing_recorded_waits_the_poll_interval():
    assert first_wait_seconds(None, 15) == 15


def test_a_typical_duration_is_waited_with_a_margin_of_at_most_a_poll():
    # a Job typically done after 60 s is first looked at 2 s later: looked at any earlier, the typical Job is still
    # running and costs a whole poll interval more (make bench, helm durations: 60 s Jobs, 15 s polls)
    assert FIRST_LOOK_MARGIN_SECONDS == 2
    assert first_wait_seconds(60.0, 15) == 62
    assert first_wait_seconds(42.7, 15) == 44
    # with polls of 1 s or 0 s an early look costs as little as the margin: no more margin than a poll
    assert first_wait_seconds(3.0, 1) == 4
    assert first_wait_seconds(3.0, 0) == 3
    assert first_wait_seconds(0.05, 0) == 0


def test_the_first_wait_is_bounded():
    assert first_wait_seconds(10 * 3600.0, 15) == MAX_FIRST_WAIT_SECONDS
