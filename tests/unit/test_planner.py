"""plan_waves / canary_size: every strategy is a list of waves."""

from __future__ import annotations

import pytest
from upgrader.rollout.planner import DEFAULT_BATCH_SIZE, DEFAULT_CANARY_PERCENT, canary_size, plan_waves


def customers(n: int) -> list[str]:
    return [f"c{i:03d}" for i in range(n)]


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [
        (20, 10, 2),  # exact
        (21, 10, 3),  # 2.1 rounds up
        (19, 10, 2),  # 1.9 rounds up
        (100, 1, 1),
        (101, 1, 2),
        (5, 10, 1),  # 0.5 -> at least one customer
        (1, 1, 1),
        (1, 100, 1),
        (7, 100, 7),
        (3, 50, 2),  # 1.5 -> 2
        (10_000, 10, 1_000),
    ],
)
def test_canary_size_is_ceil_of_the_share_and_at_least_one(total, percent, expected):
    assert canary_size(total, percent) == expected


def test_canary_size_of_nobody_is_zero():
    assert canary_size(0, 10) == 0


def test_canary_size_never_exceeds_the_total():
    assert canary_size(3, 100) == 3


def test_all_is_one_wave_with_everyone_in_order():
    items = customers(12)
    assert plan_waves(items, "all") == [items]


def test_batch_splits_in_order_with_a_short_last_batch():
    items = customers(10)
    waves = plan_waves(items, "batch", batch_size=4)
    assert [len(w) for w in waves] == [4, 4, 2]
    assert [c for w in waves for c in w] == items


def test_batch_size_equal_to_total_is_one_wave():
    assert plan_waves(customers(5), "batch", batch_size=5) == [customers(5)]


def test_batch_size_larger_than_total_is_one_wave():
    assert plan_waves(customers(3), "batch", batch_size=50) == [customers(3)]


def test_batch_size_one_gives_one_wave_per_customer():
    assert plan_waves(customers(3), "batch", batch_size=1) == [["c000"], ["c001"], ["c002"]]


def test_batch_without_size_uses_the_default():
    waves = plan_waves(customers(DEFAULT_BATCH_SIZE * 2 + 1), "batch")
    assert [len(w) for w in waves] == [DEFAULT_BATCH_SIZE, DEFAULT_BATCH_SIZE, 1]


def test_negative_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch size"):
        plan_waves(customers(3), "batch", batch_size=-1)


def test_zero_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch size"):
        plan_waves(customers(3), "batch", batch_size=0)


def test_canary_is_the_canary_wave_then_everyone_else():
    items = customers(20)
    waves = plan_waves(items, "canary", canary_percent=10)
    assert waves == [items[:2], items[2:]]


def test_canary_rounds_the_first_wave_up():
    waves = plan_waves(customers(21), "canary", canary_percent=10)
    assert [len(w) for w in waves] == [3, 18]


def test_canary_of_one_customer_is_a_single_wave_without_a_gate():
    assert plan_waves(["only"], "canary", canary_percent=10) == [["only"]]


def test_canary_of_100_percent_is_a_single_wave():
    assert plan_waves(customers(4), "canary", canary_percent=100) == [customers(4)]


def test_canary_without_percent_uses_the_default():
    waves = plan_waves(customers(100), "canary")
    assert len(waves[0]) == canary_size(100, DEFAULT_CANARY_PERCENT)
    assert len(waves[0]) + len(waves[1]) == 100


@pytest.mark.parametrize("percent", [0, -5, 101])
def test_canary_percent_out_of_range_is_refused(percent):
    with pytest.raises(ValueError, match="canary percent"):
        plan_waves(customers(10), "canary", canary_percent=percent)


@pytest.mark.parametrize("strategy", ["all", "batch", "canary"])
def test_no_customers_means_no_waves(strategy):
    assert plan_waves([], strategy, canary_percent=10, batch_size=3) == []


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown strategy"):
        plan_waves(customers(3), "linear")


@pytest.mark.parametrize(("strategy", "kwargs"), [("all", {}), ("batch", {"batch_size": 3}),
                                                  ("canary", {"canary_percent": 30})])  # fmt: skip
def test_every_customer_is_planned_exactly_once(strategy, kwargs):
    items = customers(17)
    waves = plan_waves(items, strategy, **kwargs)
    assert [c for w in waves for c in w] == items
    assert all(waves)  # no empty wave


def test_plan_accepts_any_sequence_and_does_not_mutate_it():
    items = tuple(customers(5))
    waves = plan_waves(items, "batch", batch_size=2)
    assert waves == [["c000", "c001"], ["c002", "c003"], ["c004"]]
    assert items == tuple(customers(5))


def test_the_documented_defaults_are_batches_of_10_and_a_canary_of_10_percent():
    """The API documents both defaults as 10 (docs/reference/api-guide.md, DeployRequest): a batch upgrade without batchSize runs
    waves of 10, a canary without canaryPercent starts with 10 % (mutants: either default 10 -> 11)."""
    assert [len(w) for w in plan_waves(customers(25), "batch")] == [10, 10, 5]
    assert [len(w) for w in plan_waves(customers(50), "canary")] == [5, 45]


def test_a_canary_of_1_percent_is_accepted():
    """The smallest canary share the API accepts (mutants: the bound 1 <= percent moved to 2, or made strict)."""
    assert [len(w) for w in plan_waves(customers(200), "canary", canary_percent=1)] == [2, 198]


def test_the_refusals_name_what_is_wrong():
    """The planner's refusals say which rule the request broke (mutants: each message replaced)."""
    with pytest.raises(ValueError, match="^batch size must be at least 1$"):
        plan_waves(customers(3), "batch", batch_size=0)
    with pytest.raises(ValueError, match="^canary percent must be between 1 and 100$"):
        plan_waves(customers(3), "canary", canary_percent=0)
    with pytest.raises(ValueError, match="^progressive steps must be increasing percentages ending at 100$"):
        plan_waves(customers(3), "progressive", steps=[50])
    with pytest.raises(ValueError, match="^unknown strategy 'linear'$"):
        plan_waves(customers(3), "linear")
