"""Helm's output never travels in Step Functions state (issue 29 item 4): through the real ASL, no child step
receives or returns it (the state the state machine carries from task to task, so what every child
execution's history and CloudWatch Logs would hold), while the worker stored it in PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.helpers import deploy

pytestmark = pytest.mark.e2e


def test_no_task_of_the_state_machine_carries_helm_output(stack, make_customers, sql, monkeypatch):
    """Breakage tried: check_helm_job returning `output` in its result again (as before the fix): helm's
    "has been upgraded" is in CheckHelmJob's result and FinishCustomer's input."""
    from upgrader.rollout import orchestration

    carried: list[tuple[str, str]] = []
    for name in ("begin_customer", "start_helm_job", "check_helm_job", "check_rollout", "finish_customer"):
        step = getattr(orchestration, name)

        def recording(event: Any, *args: Any, _name: str = name, _step: Any = step, **kwargs: Any) -> Any:
            result = _step(event, *args, **kwargs)
            carried.append((_name, json.dumps([event, result], default=str)))
            return result

        monkeypatch.setattr(orchestration, name, recording)
    make_customers(2)
    started = deploy(component="api", version="v1.2.0", strategy="all")
    execution = stack.wait_execution(started["jobId"])
    assert execution["status"] == "SUCCEEDED", execution

    assert [n for n, _ in carried].count("check_helm_job") >= 2 and "finish_customer" in [n for n, _ in carried]
    assert [(n, s[:200]) for n, s in carried if "has been upgraded" in s or "LAST DEPLOYED" in s] == []
    stored = sql("SELECT output FROM helm_outputs ORDER BY log_id")
    assert len(stored) == 2 and all("has been upgraded" in r["output"] for r in stored)
