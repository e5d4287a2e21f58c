"""The local stack as an operator runs it, with `--webhook URL` and `--slack-api URL`: every event reaches
the webhook once, the Slack stand-in holds one message per upgrade, GET /metrics shows the numbers."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.local.conftest import StackProcess, stack_env
from tests.support.database import temporary_database
from tests.support.receiver import Receiver
from upgradectl.local.slack_standin import SlackStandIn

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, SlackStandIn]]:
    with Receiver() as hook, SlackStandIn() as slack:
        yield hook, slack


@pytest.fixture(scope="module")
def events_stack(receivers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackProcess, str]]:
    hook, slack = receivers
    with temporary_database(prefix="upgrades_events") as url:
        stack = StackProcess(
            ["--customers", "6", "--job-seconds", "0.2", "--poll-seconds", "0", "--fail-customer", "cust_abc128",
             "--webhook", f"{hook.url}/events", "--slack-api", slack.url],
            stack_env(DATABASE_URL=url), tmp_path_factory.mktemp("events-stack"),
        )  # fmt: skip
        yield stack, url
        assert stack.stop(signal.SIGINT) == 0, stack.output


def _wait(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.1)


def test_every_event_reaches_the_webhook_once_and_slack_keeps_one_message(events_stack, receivers):
    stack, url = events_stack
    hook, slack = receivers
    banner = stack.stdout_path.read_text()
    assert re.search(r"^  Events          .*webhook POST http://127\.0\.0\.1:\d+/events", banner, re.M), banner
    assert f"Prometheus metrics at {stack.url}/metrics" in banner

    code, started = stack.request("POST", "/api/upgrades/deploy",
                                  {"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 20})  # fmt: skip
    assert code == 202 or code == 200, started
    uid = started["upgradeId"]
    stack.wait_status(uid, {"awaiting_continue"})
    assert stack.request("POST", f"/api/upgrades/{uid}/continue")[0] == 200
    final = stack.wait_status(uid, {"completed", "completed_with_failures", "halted"})

    with psycopg.connect(url) as conn:

        def recorded() -> list[int]:
            return [r[0] for r in conn.execute("SELECT id FROM event_outbox ORDER BY id").fetchall()]

        def unsent() -> int:
            return len(conn.execute("SELECT id FROM event_outbox WHERE sent_at IS NULL").fetchall())

        _wait(lambda: unsent() == 0 and len(hook.bodies("/events")) >= len(recorded()))
        ids = [int(b["detail"]["eventId"]) for b in hook.bodies("/events")]
        assert sorted(ids) == recorded() and len(ids) == len(set(ids))
    types = [b["detail-type"] for b in hook.bodies("/events")]
    lifecycle = [t for t in types if t.startswith("Upgrade")]
    assert lifecycle[0] == "Upgrade Started" and lifecycle[-1] == "Upgrade Finished"
    assert "Upgrade Gate Waiting" in lifecycle and "Upgrade Gate Continued" in lifecycle
    _wait(lambda: final["status"].replace("_", " ") in slack.top_level()[0]["text"])
    assert len(slack.top_level()) == 1 and slack.problems == []

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/metrics", timeout=10) as response:
        text = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/plain")
    assert re.search(r'upgrader_customers_total\{component="api",outcome="completed",strategy="canary"\} \d', text)
    assert 'upgrader_fleet_customers{component="api",version="v1.2.0"}' in text
    assert "upgrader_helm_duration_seconds_bucket" in text
