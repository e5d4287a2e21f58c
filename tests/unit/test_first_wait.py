"""The first wait on a running helm Job: the component's typical duration, else the poll interval."""

from __future__ import annotations

from upgrader.rollout.orchestration import MAX_FIRST_WAIT_SECONDS, first_wait_seconds


def test_nothing_recorded_waits_the_poll_interval():
    assert first_wait_seconds(None, 15) == 15


def test_a_typical_duration_is_waited_rounded_down():
    # a Job typically done after 42.7 s is first looked at after 42 s, never later than it likely ends
    assert first_wait_seconds(42.7, 15) == 42
    assert first_wait_seconds(3.0, 15) == 3


def test_the_first_wait_is_bounded():
    assert first_wait_seconds(10 * 3600.0, 15) == MAX_FIRST_WAIT_SECONDS
