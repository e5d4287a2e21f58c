"""A strategy is one object of the registry (upgrader.contract.strategies): registering a new one, and editing
nothing else, gives it to the whole product: the request's validation, the plan preview's waves and gates, the
deploy's message and stored parameters, the state machine's gate after each wave (`evaluate_wave`), the failure
budget and the event schemas (issue 24, item 2)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from jsonschema import Draft202012Validator
from upgrader.contract.strategies import REGISTRY, Strategy, WaveOptions

from tests.api.helpers import continue_, deploy
from tests.api.test_plan import plan
from tests.support.event_schemas import recorded_events
from upgradectl.event_schemas import schema_for

pytestmark = pytest.mark.e2e
T = TypeVar("T")


class Halves(Strategy):
    """Test-only: half of the customers, an approval gate, then the other half, which may not fail at all."""

    name = "halves"
    summary = "half, then (after /continue) the other half"
    wave_labels = ("first half", "second half")
    waves_without_failures = frozenset({1})

    def waves(self, items: list[T], options: WaveOptions) -> list[list[T]]:
        half = (len(items) + 1) // 2
        return [items[:half], items[half:]] if len(items) > 1 else [items]

    def approval_after(self, wave: int, *, step_gate: str | None) -> bool:
        return wave == 0

    def parameters(self, options: WaveOptions, step_gate: str | None) -> dict[str, Any]:
        return {"halves": True}

    def message(self, sizes: list[int], step_gate: str | None) -> str:
        return f"Halves upgrade started: {' then '.join(str(s) for s in sizes)} customers"


@pytest.fixture
def added_strategy() -> Iterator[Strategy]:
    strategy = Halves()
    REGISTRY.add(strategy)
    try:
        yield strategy
    finally:
        REGISTRY.remove(strategy.name)


@pytest.fixture(autouse=True)
def every_event_matches_its_published_schema(added_strategy, request, database_url) -> Iterator[None]:
    """Here the schemas are generated from the registry as it is (with halves), as `make event-schemas` would
    write them for a real strategy: every event the test recorded passes them."""
    yield
    if "env" not in request.fixturenames:
        return
    sent = recorded_events(database_url)
    problems = [(t, e.message) for t, d in sent for e in Draft202012Validator(schema_for(t)).iter_errors(d)]
    assert sent and problems == []


def test_a_strategy_registered_once_is_planned_deployed_gated_and_budgeted(added_strategy, stack, make_customers, sql):
    """Breakage tried: `gate_after` asking `strategy == "canary"` instead of the strategy object (the preview
    shows no approval gate); `evaluate_wave` deciding the gate by the strategy's name (canary, progressive)
    instead of `gate_after` (the run never stops after the first half: status never awaiting_continue); the
    request's strategy a
    Literal of the four (the plan answers 422); the failure budget's canary check written `strategy ==
    "canary" and wave == 0` (the second half's budget tolerates 1, the deploy's failureThreshold)."""
    ids = make_customers(5)
    request = {"component": "api", "version": "v1.2.0", "strategy": "halves", "failureThreshold": {"count": 1}}
    # The plan preview: two waves, the approval gate after the first, nothing after the last
    code, preview = plan(request)
    assert code == 200, preview
    assert [(w["size"], w["gate"]) for w in preview["waves"]] == [(3, "approval"), (2, None)]
    assert preview["message"].startswith("Halves upgrade would start: 3 then 2 customers")
    # The deploy: the same waves, the strategy's message and parameters
    started = deploy(**request)
    assert (started["strategy"], started["waves"]) == ("halves", [3, 2])
    assert started["message"].startswith("Halves upgrade started: 3 then 2 customers")
    (row,) = sql("SELECT strategy, parameters FROM system_upgrades")
    assert (row["strategy"], row["parameters"]["halves"]) == ("halves", True)
    # At run time the first half runs, then the upgrade waits at the approval gate
    waiting = stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    assert (waiting["gate"], waiting["completed"], waiting["pending"]) == ("approval", 3, 2)
    # The second half tolerates no failure (the strategy says so, whatever failureThreshold says)
    stack.cluster.fail_customers.add(ids[4])
    assert continue_(started["upgradeId"])[0] == 200
    stack.wait_execution(started["jobId"])
    final = stack.status(started["upgradeId"])
    assert (final["status"], final["completed"], final["failed"]) == ("halted", 4, 1)
    assert "wave 2 of 2: 1 of 2 customers failed (tolerated: 0)" in final["haltReason"]
