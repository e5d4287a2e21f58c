"""The first look at a running helm Job waits the component's typical helm duration, learned from the
helm operations recorded before (the real ASL, real handlers, PostgreSQL, the simulated cluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.api.helpers import deploy
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.functions import load_function

pytestmark = pytest.mark.e2e

JOB_SECONDS = 1.0
LEARNED_SECONDS = 4


@pytest.fixture
def check_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The events the state machine hands CheckHelmJob (recorded; the real handler answers)."""
    calls: list[dict[str, Any]] = []
    module = load_function("check_helm_job")
    handler: Callable[[dict[str, Any], Any], Any] = module.lambda_handler

    def recording(event: dict[str, Any], context: Any) -> Any:
        calls.append(event)
        return handler(event, context)

    monkeypatch.setattr(module, "lambda_handler", recording)
    return calls


@pytest.fixture
def cluster(check_calls: list[dict[str, Any]]) -> Iterator[SimulatedCluster]:
    # Jobs of 1 s (the stack's poll interval is 0), set up after the recorder so the runtime sees it.
    with SimulatedCluster(job_duration_seconds=JOB_SECONDS) as sim:
        yield sim


def test_first_look_at_a_running_job_waits_the_learned_helm_duration(stack, make_customers, sql, check_calls):
    # Given one customer upgraded once: its Job's own duration is recorded
    make_customers(1)
    first = deploy(component="api", version="v1.2.0", healthCheck={"enabled": False})
    assert stack.wait_execution(first["jobId"])["status"] == "SUCCEEDED"
    recorded = sql("SELECT helm_seconds FROM customer_upgrade_logs WHERE upgrade_id = %s", int(first["upgradeId"]))
    assert [row["helm_seconds"] is not None for row in recorded] == [True]
    # (nothing was recorded before it, so its first look waited the poll interval)
    assert check_calls[0]["job"]["firstWaitSeconds"] == 0
    # and the component's recorded helm operations typically take 4 s
    sql("UPDATE customer_upgrade_logs SET helm_seconds = %s WHERE component = 'api'", LEARNED_SECONDS)
    check_calls.clear()
    # When the next upgrade of the component runs (a 1 s Job, a poll interval of 0)
    second = deploy(component="api", version="v1.3.0", healthCheck={"enabled": False})
    assert stack.wait_execution(second["jobId"])["status"] == "SUCCEEDED"
    # Then its first look at the Job waits the learned 4 s (the Wait state reads firstWaitSeconds; no margin with a
    # poll interval of 0: an early look costs nothing) ...
    assert check_calls[0]["job"]["firstWaitSeconds"] == LEARNED_SECONDS
    # ... so one look finds the Job finished, where polling at 0 s looks many times while it runs
    assert len(check_calls) == 1
    assert stack.status(second["upgradeId"])["completed"] == 1
