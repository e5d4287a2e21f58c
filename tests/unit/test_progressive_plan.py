"""The progressive strategy is a list of waves: cumulative steps, presets, and gates in the plan."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from upgrader.contract.models import DeployRequest
from upgrader.rollout.planner import PROGRESSIONS, plan_limit_problems, plan_waves, progressive_steps

BASE = {"component": "api", "version": "v1.2.0", "strategy": "progressive"}


def sizes(n: int, steps: list[int]) -> list[int]:
    return [len(w) for w in plan_waves(list(range(n)), "progressive", steps=steps)]


def test_steps_are_cumulative_percentages():
    assert sizes(100, [1, 5, 25, 100]) == [1, 4, 20, 75]
    assert sizes(40, [1, 5, 25, 100]) == [1, 1, 8, 30]  # ceil(0.4) = 1, ceil(2) = 2, ceil(10) = 10
    assert sizes(3, [1, 5, 25, 100]) == [1, 2]  # steps adding nobody merge away
    assert sum(sizes(1000, PROGRESSIONS["exponential"])) == 1000
    assert sizes(10, PROGRESSIONS["linear"]) == [1] * 10


def test_the_waves_keep_the_customers_order():
    waves = plan_waves(list("abcdefghij"), "progressive", steps=[10, 50, 100])
    assert waves == [["a"], ["b", "c", "d", "e"], ["f", "g", "h", "i", "j"]]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": [5, 1, 100]}, "strictly increasing"),
        ({"steps": [1, 5, 50]}, "the last one 100"),
        ({"steps": [1, 1, 100]}, "strictly increasing"),
        ({"steps": [0, 100]}, "greater than or equal to 1"),
        ({"steps": [1, 100], "progression": "linear"}, "not both"),
        ({"stepGate": "bake"}, "needs bakeSeconds"),
    ],
)
def test_invalid_progressive_requests_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        DeployRequest.model_validate({**BASE, **fields})


def test_progressive_fields_only_go_with_the_progressive_strategy():
    with pytest.raises(ValidationError, match="only go with strategy progressive"):
        DeployRequest.model_validate({**BASE, "strategy": "canary", "steps": [1, 100]})


def test_every_manual_gate_counts_against_the_execution_limit():
    assert plan_limit_problems(4, "progressive", 0, 7 * 24 * 3600, step_gate="manual") == []
    problems = plan_limit_problems(60, "progressive", 0, 7 * 24 * 3600, step_gate="manual")
    assert problems and "x 59 approval gates" in problems[0]
    assert plan_limit_problems(60, "progressive", 0, 7 * 24 * 3600, step_gate="bake") == []


def test_without_steps_the_preset_is_exponential_doubling_until_everyone():
    """The documented default (docs/howto/canary-and-progressive.md: 1, 2, 4, ... 64, 100 %) and the linear preset when named (mutants:
    any exponential step changed, the default name replaced, `progression or` turned into `and`)."""
    assert progressive_steps(None, None) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert progressive_steps(None, "exponential") == [1, 2, 4, 8, 16, 32, 64, 100]
    assert progressive_steps(None, "linear") == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert progressive_steps([5, 100], "linear") == [5, 100]  # the request's own steps win
    assert sizes(200, progressive_steps(None, None)) == [2, 2, 4, 8, 16, 32, 64, 72]


@pytest.mark.parametrize("steps", [None, [], [0, 50, 100], [50, 10, 100], [10, 10, 100], [10, 50]])
def test_the_planner_refuses_steps_that_are_not_increasing_percentages_ending_at_100(steps):
    """The planner's own check, for the workers that plan without the request models (mutants: steps[0]
    read as steps[1]; `not steps or` turned into `and`, which lets an unsorted list through)."""
    with pytest.raises(ValueError, match="progressive steps must be increasing"):
        plan_waves(list(range(10)), "progressive", steps=steps)
