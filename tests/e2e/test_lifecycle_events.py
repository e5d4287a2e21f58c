"""Lifecycle events end to end: the real state machine, handlers, PostgreSQL and simulated cluster; the
outbox drained by the local publisher thread to the (moto) EventBridge bus and a real HTTP webhook."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from upgrader import factory
from upgrader.notifications import events

from tests.api.helpers import continue_, control, deploy
from tests.e2e.conftest import Stack
from tests.e2e.test_nothing_stuck import resume
from tests.support.receiver import Receiver
from upgradectl.event_schemas import file_name
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.events import WebhookChannel
from upgradectl.local.runtime import LocalRuntime

pytestmark = pytest.mark.e2e
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"


def assert_valid(details: list[tuple[str, dict[str, Any]]]) -> None:
    """Every payload matches the documented schema of its detail type."""
    for detail_type, detail in details:
        schema = json.loads((SCHEMAS / file_name(detail_type)).read_text())
        errors = [str(e) for e in jsonschema_rs.validator_for(schema, validate_formats=True).iter_errors(detail)]
        assert not errors, (detail_type, errors[:3], detail)


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def hooked(env: dict[str, str], cluster: SimulatedCluster, database_url: str, webhook: Receiver) -> Iterator[Stack]:
    """The stack with its event publisher running, sending to the webhook."""
    with LocalRuntime(database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file), kube_reader_token_file=str(cluster.reader_token_file),
                      poll_seconds=0, publish_seconds=0.05,
                      event_channels=[WebhookChannel(webhook.url)]) as runtime:  # fmt: skip
        yield Stack(runtime, cluster)


def _outbox(sql: Any) -> list[dict[str, Any]]:
    return sql("SELECT id, detail_type FROM event_outbox ORDER BY id")


def _wait_delivered(stack: Stack, webhook: Receiver, sql: Any) -> list[dict[str, Any]]:
    stack.wait_for(lambda: len(webhook.bodies()) >= len(_outbox(sql)) and not
                   sql("SELECT 1 FROM event_outbox WHERE sent_at IS NULL"), timeout=60)  # fmt: skip
    return webhook.bodies()


def _lifecycle(received: list[dict[str, Any]]) -> list[str]:
    upgrade_level = {t for t in events.DETAIL_TYPES if t.startswith("Upgrade")}
    return [e["detail-type"] for e in received if e["detail-type"] in upgrade_level]


def test_a_canary_tells_every_step_once_in_order(hooked, make_customers, webhook, sql):
    make_customers(10)
    started = deploy(component="api", version="v2.0.0", strategy="canary", canaryPercent=20)
    uid = started["upgradeId"]
    hooked.wait_for_status(uid, lambda s: s["status"] == "awaiting_continue")
    hooked.wait_for(lambda: events.GATE_WAITING in [e["detail-type"] for e in webhook.bodies()])
    waiting = next(e for e in webhook.bodies() if e["detail-type"] == events.GATE_WAITING)["detail"]
    assert waiting["gate"]["continueCommand"] == f"upgrade-customers continue {uid}"
    assert waiting["severity"] == "attention" and waiting["upgrade"]["status"] == "awaiting_continue"
    assert waiting["upgrade"]["completed"] == 2

    assert continue_(uid)[0] == 200
    assert hooked.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    received = _wait_delivered(hooked, webhook, sql)

    ids = [int(e["detail"]["eventId"]) for e in received]
    assert len(ids) == len(set(ids)) and sorted(ids) == [r["id"] for r in _outbox(sql)]  # each once, none lost
    assert _lifecycle(received) == [
        events.UPGRADE_STARTED, events.WAVE_STARTED, events.WAVE_FINISHED, events.GATE_WAITING,
        events.GATE_CONTINUED, events.WAVE_STARTED, events.WAVE_FINISHED, events.UPGRADE_FINISHED,
    ]  # fmt: skip
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in received:
        by_type.setdefault(event["detail-type"], []).append(event["detail"])
    assert sorted(d["customer"]["customerId"] for d in by_type[events.CUSTOMER_UPGRADED]) == [
        f"cust_{i:04d}" for i in range(1, 11)]  # fmt: skip
    assert len(by_type[events.NOTICE_DONE]) == 10
    assert len(by_type[events.NOTICE_UPCOMING]) == 10  # no windows: each told as its wave is reached
    continued = by_type[events.GATE_CONTINUED][0]
    assert continued["gate"]["continuedBy"] and continued["gate"]["waitedSeconds"] >= 0
    finished = by_type[events.UPGRADE_FINISHED][0]
    assert (finished["upgrade"]["status"], finished["upgrade"]["completed"]) == ("completed", 10)
    assert [w["wave"]["budget"]["consumed"] for w in by_type[events.WAVE_FINISHED]] == [0, 0]
    assert_valid([(e["detail-type"], e["detail"]) for e in received])
    # the same events went to the EventBridge bus (the AWS path), and every row is marked sent
    assert all(e["source"] == "customer-upgrades" for e in received)


def test_halt_resume_and_abort_are_events_with_the_budget(stack, make_customers, sql):
    ids = make_customers(6)
    stack.cluster.fail_customers.add(ids[0])
    started = deploy(component="api", version="v1.2.0", strategy="batch", batchSize=3, maxConcurrency=1)
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    stack.cluster.fail_customers.clear()
    halted = _details(sql, events.UPGRADE_HALTED)
    assert len(halted) == 1
    assert halted[0]["halt"]["budget"] == {"wave": 0, "failed": 1, "size": 3, "tolerated": 0, "consumed": 1.0}
    assert halted[0]["severity"] == "critical"
    assert _details(sql, events.UPGRADE_FINISHED)[0]["upgrade"]["status"] == "halted"

    code, resumed = resume(started["upgradeId"])
    assert code == 202, resumed
    assert stack.wait_execution(resumed["jobId"])["status"] == "SUCCEEDED"
    again = _details(sql, events.UPGRADE_RESUMED)[0]["resume"]
    assert again["runName"] == resumed["jobId"] and again["customers"] == resumed["customers"]

    canary = deploy(component="dashboard", version="v2.0.0", strategy="canary", canaryPercent=20)
    stack.wait_for_status(canary["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    code, _ = control("abort", canary["upgradeId"], {"reason": "bad canary metrics"})
    assert code == 202
    assert stack.wait_execution(canary["jobId"])["status"] == "SUCCEEDED"
    aborted = _details(sql, events.UPGRADE_ABORTED)
    assert len(aborted) == 1 and aborted[0]["abort"]["reason"].endswith(": bad canary metrics")
    assert aborted[0]["abort"]["abortedBy"].endswith("PlatformOperator/jane")
    assert [d["upgrade"]["status"] for d in _details(sql, events.UPGRADE_FINISHED)][-1] == "aborted"
    assert_valid([(r["detail_type"], e.payload()) for r, e in zip(_outbox(sql), factory.outbox().events(),
                                                                  strict=True)])  # fmt: skip


def test_a_canary_aborted_at_its_gate_and_resumed_tells_its_customers_again(stack, make_customers, sql):
    """Issue 27, defect 3, as reproduced, through the real state machine: a canary of 25 % of 4 customers,
    the drain tells the next wave at the gate, an abort, a resume. Breakage tried: notice keys per log row
    alone (the former `'notice-upcoming:' || l.id`): the resumed customers heard [upcoming, cancelled,
    upgraded, done], never told before their real upgrade."""
    make_customers(4)
    started = deploy(component="api", version="v1.2.0", strategy="canary", canaryPercent=25)
    uid = started["upgradeId"]
    stack.wait_for_status(uid, lambda s: s["status"] == "awaiting_continue")
    assert factory.notices().upcoming(3600) == 3  # the publisher's drain: the next wave is reached
    assert control("abort", uid, {"reason": "bad canary metrics"})[0] == 202
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    code, resumed = resume(uid)
    assert code == 202 and resumed["customers"] == 3, resumed
    assert stack.wait_execution(resumed["jobId"])["status"] == "SUCCEEDED"

    heard: dict[str, list[str]] = {}
    for row in sql("SELECT customer_id, detail_type FROM event_outbox WHERE customer_id IS NOT NULL ORDER BY id"):
        heard.setdefault(row["customer_id"], []).append(row["detail_type"])
    assert heard["cust_0001"] == [events.NOTICE_UPCOMING, events.CUSTOMER_UPGRADED, events.NOTICE_DONE]
    for customer in ("cust_0002", "cust_0003", "cust_0004"):
        assert heard[customer] == [events.NOTICE_UPCOMING, events.NOTICE_CANCELLED, events.NOTICE_UPCOMING,
                                   events.CUSTOMER_UPGRADED, events.NOTICE_DONE], customer  # fmt: skip


def _details(sql: Any, detail_type: str) -> list[dict[str, Any]]:
    rows = sql("SELECT id FROM event_outbox WHERE detail_type = %s ORDER BY id", detail_type)
    found = [factory.outbox().event(int(r["id"])) for r in rows]
    return [e.payload() for e in found if e is not None]


def test_a_failing_webhook_loses_nothing_and_says_why(env, cluster, database_url, make_customers, sql, caplog):
    caplog.set_level(logging.ERROR, logger="upgrade-local.events")
    answers = iter([500, 500, 503, 500, 502, 500])

    def flaky(path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return next(answers, 200), {}

    with Receiver(flaky) as receiver, LocalRuntime(
        database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file), kube_reader_token_file=str(cluster.reader_token_file),
        poll_seconds=0, event_channels=[WebhookChannel(receiver.url, pause=lambda s: None)],
    ) as runtime:  # fmt: skip
        make_customers(3)
        started = deploy(component="api", version="v1.2.0", strategy="all")
        assert runtime.wait(started["jobId"])["status"] == "SUCCEEDED"
        first = runtime.publish()
        assert first["failed"] >= 1 and "HTTP 50" in first["errors"][0]
        assert "could not deliver event 1" in caplog.text and receiver.url in caplog.text
        stack = Stack(runtime, cluster)
        stack.wait_for(lambda: runtime.publish()["sent"] == 0 and not sql("SELECT 1 FROM event_outbox WHERE sent_at "
                                                                           "IS NULL"), timeout=90)  # fmt: skip
        ids = [int(b["detail"]["eventId"]) for b in receiver.bodies()]
        assert ids == sorted(ids) and ids == [r["id"] for r in _outbox(sql)]  # in order, once, none lost


def test_a_webhook_url_nothing_listens_on_keeps_the_events(env, cluster, database_url, make_customers, sql, caplog):
    caplog.set_level(logging.ERROR, logger="upgrade-local.events")
    with Receiver() as closed:
        url = closed.url + "/hook"
    with LocalRuntime(database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file), kube_reader_token_file=str(cluster.reader_token_file),
                      poll_seconds=0, event_channels=[WebhookChannel(url, pause=lambda s: None)]) as runtime:  # fmt: skip
        make_customers(2)
        started = deploy(component="api", version="v1.2.0", strategy="all")
        assert runtime.wait(started["jobId"])["status"] == "SUCCEEDED"
        runtime.publish()
    assert f"POST {url} failed" in caplog.text and "kept in the outbox" in caplog.text
    unsent = sql("SELECT count(*) AS n FROM event_outbox WHERE sent_at IS NULL")[0]["n"]
    assert unsent == len(_outbox(sql)) > 0
