"""events/ holds one realistic event per function: the workers' events have the shape the real
state machine sends today (captured from a run), so `sam local invoke -e events/...` stays true."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from upgrader.rollout import orchestration

from tests.api.helpers import continue_, deploy
from upgradectl.local.functions import API_FUNCTIONS, BACKGROUND_FUNCTIONS, FUNCTIONS, WORKER_FUNCTIONS

pytestmark = pytest.mark.e2e
EVENTS = Path(__file__).resolve().parents[2] / "events"


def shape(value: Any) -> Any:
    """Keys (recursively) and JSON types, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return "null" if value is None else type(value).__name__


def test_every_function_has_an_event():
    folders = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "app.py").is_file())
    assert set(folders) == {*API_FUNCTIONS, *WORKER_FUNCTIONS, *BACKGROUND_FUNCTIONS, "migrate"}
    events = {p.stem for p in EVENTS.glob("*.json")}
    for name in folders:
        assert any(e == name or e.startswith(f"{name}_") for e in events), f"no events/{name}*.json"


def test_worker_events_have_the_shape_the_state_machine_sends(stack, make_customers, monkeypatch):
    captured: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    for name in WORKER_FUNCTIONS:
        real = getattr(orchestration, name)

        def spy(event: dict[str, Any], _real=real, _name=name, **kwargs: Any) -> Any:
            with lock:
                # finish_customer: keep the success path (the event file shows a finished Job)
                if _name not in captured or (_name == "finish_customer" and "health" in event):
                    captured[_name] = json.loads(json.dumps(event))
            return _real(event, **kwargs)

        monkeypatch.setattr(orchestration, name, spy)
    make_customers(10)
    started = deploy(strategy="canary", canaryPercent=10)
    stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    assert continue_(started["upgradeId"])[0] == 200
    stack.wait_execution(started["jobId"])
    assert set(captured) == set(WORKER_FUNCTIONS)
    for name, live in captured.items():
        recorded = json.loads((EVENTS / f"{name}.json").read_text())
        assert shape(recorded) == shape(live), f"events/{name}.json no longer matches what the state machine sends"
