"""What one Step Functions execution can hold: the plan limits checked before an upgrade starts
(`planner.plan_limit_problems`), at their exact boundaries."""

from __future__ import annotations

import pytest
from upgrader.rollout.planner import plan_limit_problems

YEAR = 31_536_000  # an execution's longest life
ALLOWED_WAIT = YEAR - 604_800  # a week of it kept for the waves themselves


def test_500_waves_fit_one_execution_and_501_are_refused_saying_why():
    """Mutants killed: MAX_WAVES 500 -> 501, `waves > MAX_WAVES` made `>=`, the history limit (25,000) or
    the events per wave (30) changed, the message replaced."""
    assert plan_limit_problems(500, "batch", 0, 0) == []
    assert plan_limit_problems(501, "batch", 0, 0) == [
        "501 waves: at most 500 waves fit one execution (its history is capped at 25000 events, about 30 per "
        "wave); use a larger batchSize"
    ]


def test_the_planned_waits_may_fill_a_year_less_the_week_kept_for_the_waves():
    """Mutants killed: each factor of the year (365 x 24 x 3600) or of the week kept changed, the comparison
    made `>=`, the message replaced."""
    assert plan_limit_problems(2, "batch", ALLOWED_WAIT, 0) == []
    assert plan_limit_problems(2, "batch", ALLOWED_WAIT + 1, 0) == [
        f"the planned waits (bakeSeconds x 1 waves + approvalTimeoutSeconds x 0 approval gates) come to "
        f"{ALLOWED_WAIT + 1} s; an execution may last at most {YEAR} s (one year), and 604800 s are kept for "
        "the waves themselves"
    ]


@pytest.mark.parametrize(
    ("waves", "strategy", "gate", "bakes", "approvals"),
    [
        (2, "canary", None, 1, 1),  # one gate, whatever the waves
        (5, "canary", None, 4, 1),
        (3, "progressive", "manual", 2, 2),  # a gate after every step but the last
        (3, "progressive", "bake", 2, 0),
        (3, "batch", None, 2, 0),
    ],
)
def test_every_bake_between_waves_and_every_gate_counts_once(waves, strategy, gate, bakes, approvals):
    """The waits are bakeSeconds x (waves - 1) + approvalTimeoutSeconds x gates (mutants killed: the
    canary's single gate, the gates or bakes counted from `waves` instead of `waves - 1`)."""
    bake = ALLOWED_WAIT // (bakes + approvals)
    assert plan_limit_problems(waves, strategy, bake, bake, step_gate=gate) == []
    refused = plan_limit_problems(waves, strategy, bake + 1, bake + 1, step_gate=gate)
    assert len(refused) == 1 and f"x {bakes} waves + approvalTimeoutSeconds x {approvals} approval gates" in refused[0]


def test_a_plan_without_waves_waits_for_nothing():
    """Mutant killed: `max(waves - 1, 0)` floored at 1."""
    assert plan_limit_problems(0, "progressive", YEAR, YEAR, step_gate="manual") == []


def test_a_single_wave_refused_for_its_gate_counts_no_bake():
    """A one-wave canary whose gate alone waits too long: the refusal counts 0 bakes (mutant killed: the
    message's `max(waves - 1, 0)` floored at 1)."""
    refused = plan_limit_problems(1, "canary", 0, ALLOWED_WAIT + 1)
    assert len(refused) == 1 and "(bakeSeconds x 0 waves + approvalTimeoutSeconds x 1 approval gates)" in refused[0]
