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
from upgradectl.local.functions import (
    ANALYSIS_FUNCTIONS,
    API_FUNCTIONS,
    BACKGROUND_FUNCTIONS,
    FUNCTIONS,
    WORKER_FUNCTIONS,
)
from upgradectl.local.gateway import build_event, match_route

pytestmark = pytest.mark.e2e
EVENTS = Path(__file__).resolve().parents[2] / "events"


def shape(value: Any) -> Any:
    """Keys (recursively) and JSON types, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return "null" if value is None else type(value).__name__


def key_differences(recorded: Any, live: Any, where: str = "") -> list[str]:
    """Where two events differ in their keys (recursively; a list by its first item), each naming the field."""
    if isinstance(recorded, dict) and isinstance(live, dict):
        found = [f"{where}{key}: missing from the file" for key in live.keys() - recorded.keys()]
        found += [f"{where}{key}: not in what is sent" for key in recorded.keys() - live.keys()]
        for key in recorded.keys() & live.keys():
            found += key_differences(recorded[key], live[key], f"{where}{key}.")
        return sorted(found)
    if isinstance(recorded, list) and isinstance(live, list) and recorded and live:
        return key_differences(recorded[0], live[0], f"{where}0.")
    return []


def test_key_differences_name_the_field():
    """Breakage tried: a nested key compared only at the top level (customer.namespace went unnoticed)."""
    live = {"upgradeId": 1, "customer": {"namespace": "customer-abc123", "release": "r"}}
    assert key_differences({"upgradeId": 1, "customer": {"release": "r"}}, live) == [
        "customer.namespace: missing from the file"
    ]


def test_api_events_have_the_keys_the_local_api_sends():
    """Each API event against the REST proxy event the local API server builds for the same request
    (upgradectl/local/server.py build_event, what API Gateway sends). Values differ (ids, times, the identity
    without SigV4), the keys may not.

    Breakage tried: requestTime removed from one event file (the test named requestContext.requestTime, the field
    the event files lacked before)."""
    for path in sorted(EVENTS.glob("api_*.json")):
        recorded = json.loads(path.read_text())
        route, params, _ = match_route(recorded["httpMethod"], recorded["path"])
        assert route is not None, f"{path.name}: no route for {recorded['httpMethod']} {recorded['path']}"
        query = "&".join(f"{k}={v}" for k, v in (recorded.get("queryStringParameters") or {}).items())
        live = build_event(route, method=recorded["httpMethod"], raw_path=recorded["path"], query=query,
                           headers=recorded["headers"], body=(recorded["body"] or "").encode(), path_params=params,
                           source_ip="127.0.0.1", user_arn="local:test")  # fmt: skip
        assert key_differences(recorded, live) == [], path.name


def test_every_function_has_an_event():
    folders = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "app.py").is_file())
    assert set(folders) == {*API_FUNCTIONS, *WORKER_FUNCTIONS, *ANALYSIS_FUNCTIONS, *BACKGROUND_FUNCTIONS, "migrate"}
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
        assert key_differences(recorded, live) == [], f"events/{name}.json: not what the state machine sends"
        assert shape(recorded) == shape(live), f"events/{name}.json no longer matches what the state machine sends"
