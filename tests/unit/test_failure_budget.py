"""tolerated_failures: a wave's failure budget, in particular a percentage of a wave whose share is not a
whole number of customers (rounded down, exactly, whatever the wave's size)."""

from __future__ import annotations

import pytest
from upgrader.rollout.failure_budget import WaveBudget
from upgrader.rollout.planner import tolerated_failures


@pytest.mark.parametrize(
    ("size", "percent", "tolerated"),
    [
        (9, 30, 2),  # 2.7: rounding to nearest or up would tolerate 3
        (7, 30, 2),  # 2.1: rounding up would tolerate 3
        (3, 50, 1),  # 1.5: round-half-even and rounding up would tolerate 2
        (5, 50, 2),  # 2.5
        (5, 10, 0),  # 0.5: a small wave tolerates nobody
        (19, 10, 1),  # 1.9
        (1, 99, 0),  # 0.99
        (3, 33.4, 1),  # 1.002 (a percentage with decimals)
        (6, 12.5, 0),  # 0.75
        (8, 12.5, 1),  # exactly 1
        (10, 30, 3),  # exactly 3
        (1000, 0.15, 1),  # 1.5
        (20, 100, 20),
        (20, 0, 0),
    ],
)
def test_a_percentage_tolerates_its_share_of_the_wave_rounded_down(size, percent, tolerated):
    """Breakage tried: `math.ceil(...)` and `round(...)` instead of rounding down in
    `planner.tolerated_failures`; both made this test fail (2.7, 2.1, 1.5, 0.5, ... cases)."""
    assert tolerated_failures("all", 0, size, {"percent": percent}) == tolerated
    assert tolerated_failures("batch", 3, size, {"percent": percent}) == tolerated


@pytest.mark.parametrize(
    ("size", "percent", "tolerated"),
    [
        (375, 18.4, 69),  # 375 x 18.4 / 100 is exactly 69; in binary floating point 68.99999999999999
        (375, 32.8, 123),
        (500, 64.6, 323),
        (1000, 28.7, 287),
    ],
)
def test_a_whole_share_is_never_lost_to_floating_point(size, percent, tolerated):
    """A share that is a whole number of customers is tolerated in full.

    Breakage tried: the former `int(wave_size * float(percent) / 100)` (what main computed): 375 at 18.4 %
    tolerated 68, not 69; this test failed."""
    assert tolerated_failures("all", 0, size, {"percent": percent}) == tolerated


def test_every_whole_share_up_to_a_fleet_of_500_is_exact():
    """Every wave size 1..500 and every percentage with two decimals: the exact floor of size x percent / 100.

    Breakage tried: the former float computation (11 wrong answers in this range, e.g. 375 at 40.8 %);
    `math.ceil`; both failed."""
    wrong = [
        (size, hundredths)
        for size in range(1, 501)
        for hundredths in range(0, 10_001, 20)
        if tolerated_failures("all", 0, size, {"percent": float(f"{hundredths // 100}.{hundredths % 100:02d}")})
        != size * hundredths // 10_000
    ]
    assert wrong == []


def test_the_canary_wave_tolerates_nothing_whatever_the_threshold():
    assert tolerated_failures("canary", 0, 40, {"percent": 50}) == 0
    assert tolerated_failures("canary", 1, 40, {"percent": 50}) == 20


def test_a_count_is_taken_as_given_and_no_threshold_tolerates_nothing():
    assert tolerated_failures("all", 0, 9, {"count": 4}) == 4
    assert tolerated_failures("all", 0, 9, None) == 0
    assert tolerated_failures("all", 0, 9, {}) == 0


def test_a_wave_budget_reaches_events_with_every_figure_and_the_share_consumed():
    """The budget as a halt's and a wave's events carry it (`WaveBudget.as_event`): the wave, its failures,
    its size, what it tolerates and the share consumed, failed / (tolerated + 1) rounded to 4 places.

    Kills the mutants of `rollout/failure_budget.py:44-45`: each key renamed (`"XXwaveXX"`, `"XXfailedXX"`,
    `"XXsizeXX"`, `"XXtoleratedXX"`, `"XXconsumedXX"`), `failed / (allowed + 1)` → `failed * (allowed + 1)`,
    `allowed + 1` → `allowed + 2`, and `round(..., 4)` → `round(..., 5)`."""
    budget = WaveBudget("batch", 2, 10, 1, {"percent": 20})  # tolerates 2: one failure consumed a third
    assert budget.as_event() == {"wave": 2, "failed": 1, "size": 10, "tolerated": 2, "consumed": 0.3333}
    assert budget.exceeded is False
    over = WaveBudget("all", 0, 4, 3, {"count": 1})  # tolerates 1: three failures are one and a half budgets
    assert over.as_event() == {"wave": 0, "failed": 3, "size": 4, "tolerated": 1, "consumed": 1.5}
    assert over.exceeded is True
    assert over.reason(3) == "wave 1 of 3: 3 of 4 customers failed (tolerated: 1)"
