"""The strategies' registry (upgrader.contract.strategies) asked directly: which gate follows a wave, which
waves tolerate no failure, what a deploy stores and says, the CLI's hint and the console's table. The API,
CLI and console tests reach the same answers through the whole product; these are the lowest layer, where
`make mutants MODULE=strategies` runs."""

from __future__ import annotations

import pytest
from upgrader.contract.models import DeployRequest
from upgrader.contract.strategies import (
    REGISTRY,
    WaveOptions,
    console_table,
    gate_after,
    strategy_names,
    tolerates_failures,
)

BASE = {"component": "api", "version": "v1.2.0"}


def request(**fields: object) -> DeployRequest:
    return DeployRequest.model_validate({**BASE, **fields})


def gates(strategy: str, waves: int, *, step_gate: str | None = None, bake_seconds: int = 0) -> list[str | None]:
    """What follows each wave of a plan of `waves` waves, as the plan preview lists it."""
    return [
        gate_after(strategy, i, last=i == waves - 1, step_gate=step_gate, bake_seconds=bake_seconds)
        for i in range(waves)
    ]


def test_a_canary_waits_for_approval_after_its_first_wave_only():
    """mutants: strategies.py:114 `wave == 0` → `!=`; :72 the base's `return False` → `True` (a batch would
    wait at every wave)."""
    assert gates("canary", 2) == ["approval", None]
    assert gates("canary", 3) == ["approval", None, None]
    assert gates("batch", 3) == [None, None, None]
    assert gates("all", 1) == [None]


def test_a_progressive_upgrade_waits_for_approval_after_each_step_unless_its_gate_is_bake():
    """mutants: strategies.py:171 `step_gate == "manual"` → `!=`, the string replaced."""
    assert gates("progressive", 3, step_gate="manual") == ["approval", "approval", None]
    assert gates("progressive", 3, step_gate="bake", bake_seconds=60) == ["bake", "bake", None]


def test_bake_seconds_put_a_bake_between_waves_without_an_approval():
    """An approval gate wins over the bake; the last wave is followed by nothing (mutants: strategies.py:215
    `if last` negated; :219 `"bake" if bake_seconds else None` swapped or the string replaced)."""
    assert gates("batch", 3, bake_seconds=30) == ["bake", "bake", None]
    assert gates("canary", 3, bake_seconds=30) == ["approval", "bake", None]
    assert gates("batch", 3, bake_seconds=0) == [None, None, None]
    assert gate_after("canary", 0, last=True, step_gate=None, bake_seconds=30) is None


def test_only_the_canary_wave_tolerates_no_failure_and_a_rollback_run_has_no_such_wave():
    """mutants: strategies.py:105 the canary's wave 0 changed; :225 `or` → `and` (an unknown name such as a
    rollback run's "rollback" would be looked up and refused), `not in` → `in`."""
    assert tolerates_failures("canary", 0) is False
    assert tolerates_failures("canary", 1) is True
    assert tolerates_failures("all", 0) is True
    assert tolerates_failures("progressive", 0) is True
    assert tolerates_failures("rollback", 0) is True


def test_a_deploy_stores_the_sizing_of_its_strategy_only():
    """The upgrade's parameters (read back by resumes and status) keep each strategy's own sizing under its
    API name (mutants: strategies.py:120, :142, :187 a key replaced)."""
    options = WaveOptions(canary_percent=25, batch_size=7, steps=(10, 100))
    assert REGISTRY.get("all").parameters(options, None) == {}
    assert REGISTRY.get("canary").parameters(options, None) == {"canaryPercent": 25}
    assert REGISTRY.get("batch").parameters(options, None) == {"batchSize": 7}
    assert REGISTRY.get("progressive").parameters(options, "bake") == {"steps": [10, 100], "stepGate": "bake"}


def test_the_deploy_messages_count_the_customers_of_each_wave():
    """mutants: strategies.py:93-94, :145-146, :190, :193-194 a total dropped or the words replaced; :123
    `sizes[0]` → `sizes[1]`; :124 `total - first` → `+`, `len(sizes) > 1` → `>=` or `> 2`; :191-192 the gate's
    words or keys replaced, `len(sizes) > 1` → `>=` or `> 2`, `step_gate or 'manual'` → `and`; :201 `n == 1`
    → `!=` or `== 2`, the words replaced."""
    all_, canary, batch, progressive = (REGISTRY.get(n) for n in ("all", "canary", "batch", "progressive"))
    assert all_.message([1], None) == "Upgrade started for all 1 customer"
    assert all_.message([7], None) == "Upgrade started for all 7 customers"
    assert canary.message([2, 18], None) == "Canary upgrade started for 2 customers; 18 more after /continue"
    assert canary.message([1], None) == "Canary upgrade started for 1 customer"
    assert batch.message([3, 3, 1], None) == "Batch upgrade started for 7 customers in 3 batches"
    assert progressive.message([1, 4, 5], "manual") == (
        "Progressive upgrade started for 10 customers in 3 steps of 1, 4, 5; each step waits for /continue"
    )
    assert progressive.message([1, 4, 5], None) == (
        "Progressive upgrade started for 10 customers in 3 steps of 1, 4, 5; each step waits for /continue"
    )
    assert progressive.message([2, 8], "bake") == (
        "Progressive upgrade started for 10 customers in 2 steps of 2, 8; each step bakes, then the next starts"
    )
    assert progressive.message([1], "manual") == "Progressive upgrade started for 1 customer in 1 steps of 1"


def test_the_cli_hints_at_continue_only_where_the_upgrade_waits_for_it():
    """mutants: strategies.py:128, :197 a hint's words replaced; :197 `== "manual"` → `!=`, the default
    `step_gate or "manual"` replaced."""
    assert REGISTRY.get("canary").continue_hint(None) == "after checking the canary customers"
    assert REGISTRY.get("progressive").continue_hint("manual") == "after checking each step"
    assert REGISTRY.get("progressive").continue_hint(None) == "after checking each step"
    assert REGISTRY.get("progressive").continue_hint("bake") is None
    assert REGISTRY.get("batch").continue_hint(None) is None
    assert REGISTRY.get("all").continue_hint(None) is None


def test_a_progressive_request_gives_its_steps_and_gate_with_the_defaults_applied():
    """The request's own steps, else its preset, else exponential; the gate manual unless it says bake
    (mutants: strategies.py:184 the default "manual" replaced)."""
    progressive = REGISTRY.get("progressive")
    plain = request(strategy="progressive")
    assert progressive.steps(plain) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert progressive.step_gate(plain) == "manual"
    baked = request(strategy="progressive", steps=[10, 100], stepGate="bake", bakeSeconds=60)
    assert progressive.steps(baked) == [10, 100]
    assert progressive.step_gate(baked) == "bake"
    assert REGISTRY.get("canary").steps(request(strategy="canary")) == []
    assert REGISTRY.get("canary").step_gate(request(strategy="canary")) is None


def test_a_bake_gate_with_its_bake_seconds_and_a_preset_alone_are_accepted():
    """The progressive checks refuse only what they name (mutants: strategies.py:174 `and` → `or`, `is not
    None` → `is None`; :176 `== "bake"` → `!=`, `not request.bakeSeconds` negated)."""
    progressive = REGISTRY.get("progressive")
    for fields in ({"progression": "linear"}, {"steps": [50, 100]}, {"stepGate": "manual"},
                   {"stepGate": "bake", "bakeSeconds": 60}, {}):  # fmt: skip
        assert progressive.request_problems(request(strategy="progressive", **fields)) == [], fields


def test_the_console_labels_each_strategys_waves_and_knows_its_waves_without_failures():
    """What /console/strategies.js serves (mutants: strategies.py:63, :104, :134, :152 a label replaced;
    :231 a key replaced, `sorted` of the waves changed)."""
    assert console_table() == {
        "all": {"waveLabels": ["all"], "wavesWithoutFailures": []},
        "canary": {"waveLabels": ["canary", "rest"], "wavesWithoutFailures": [0]},
        "batch": {"waveLabels": ["batch"], "wavesWithoutFailures": []},
        "progressive": {"waveLabels": ["step"], "wavesWithoutFailures": []},
    }


def test_the_strategies_are_registered_in_the_order_the_api_lists_them():
    """The API's enum and the CLI's choices come in this order (docs/openapi.json: all, canary, batch,
    progressive)."""
    assert strategy_names() == ("all", "canary", "batch", "progressive")


@pytest.mark.parametrize("strategy", ["canary", "batch", "all"])
def test_progressive_fields_belong_to_the_progressive_strategy_only(strategy):
    """mutants: strategies.py:153 a field name of `own_fields` replaced (the check would look up a field that
    does not exist, or let `stepGate` through with another strategy)."""
    for field, value in (("steps", [10, 100]), ("progression", "linear"), ("stepGate", "manual")):
        with pytest.raises(ValueError, match=f"{field} only go with strategy progressive"):
            request(strategy=strategy, **{field: value})


def test_wave_options_default_to_the_documented_request_defaults():
    """A strategy asked without sizing gets the API's defaults: a canary of 10 %, batches of 10, no steps
    (mutants: strategies.py:53-55 a default replaced by None)."""
    assert WaveOptions() == WaveOptions(canary_percent=10, batch_size=10, steps=())
    assert [len(w) for w in REGISTRY.get("canary").waves(list(range(50)), WaveOptions())] == [5, 45]
    assert [len(w) for w in REGISTRY.get("batch").waves(list(range(25)), WaveOptions())] == [10, 10, 5]


def test_the_progressive_refusals_say_exactly_what_is_wrong():
    """The words the API answers with (422) for a progressive request that contradicts itself (mutants:
    strategies.py:175, :177 a message wrapped in "XX...XX", which test_progressive_plan's partial matches let through)."""
    progressive = REGISTRY.get("progressive")
    # model_construct: without the model's validators, which ask the strategy themselves and raise
    both = DeployRequest.model_construct(
        component="api", version="v1.2.0", strategy="progressive", steps=[1, 100], progression="linear"
    )
    assert progressive.request_problems(both) == ["give steps or progression, not both"]
    unbaked = DeployRequest.model_construct(
        component="api", version="v1.2.0", strategy="progressive", stepGate="bake", bakeSeconds=0
    )
    assert progressive.request_problems(unbaked) == ["stepGate bake needs bakeSeconds (how long each step bakes)"]
