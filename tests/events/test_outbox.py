"""The outbox: one event per change, written with it, published to a real (moto) EventBridge bus exactly
once under worker retries, crashes and PutEvents partial failures."""

from __future__ import annotations

import json
import threading
from typing import Any

from upgrader import factory
from upgrader.notifications import events
from upgrader.notifications.publisher import EventBridgeChannel, OutboxRepository, drain

from tests.api.helpers import deploy


def _types(sql: Any) -> list[str]:
    return [r["detail_type"] for r in sql("SELECT detail_type FROM event_outbox ORDER BY id")]


def _start(make_customers: Any, sql: Any, n: int = 3) -> tuple[int, str, dict[str, int]]:
    make_customers(n)
    started = deploy()
    uid, name = int(started["upgradeId"]), started["jobId"]
    factory.runs().start_run(uid, name, "upgrade")
    rows = sql("SELECT id, customer_id FROM customer_upgrade_logs WHERE upgrade_id = %s", uid)
    return uid, name, {r["customer_id"]: r["id"] for r in rows}


def test_a_retried_worker_writes_no_second_event(make_customers, fake_workflow, sql):
    uid, name, rows = _start(make_customers, sql)
    runs = factory.runs()
    # Given steps delivered twice (Step Functions retries a Task that may have run)
    runs.start_run(uid, name, "upgrade")
    runs.set_current_wave(uid, 0)
    runs.set_current_wave(uid, 0)
    for _ in range(2):
        runs.claim_customer(rows["cust_0001"])
        runs.finish_customer(rows["cust_0001"], "completed", "ok", None)
    # Then each change has exactly one event (the customer, started before any drain told it, is told at
    # its start: the upcoming notice comes before its outcome, once)
    assert _types(sql) == [events.UPGRADE_STARTED, events.WAVE_STARTED, events.NOTICE_UPCOMING,
                           events.CUSTOMER_UPGRADED, events.NOTICE_DONE]  # fmt: skip


def test_an_event_carries_the_state_its_transaction_wrote(make_customers, fake_workflow, sql):
    uid, _, rows = _start(make_customers, sql)
    runs = factory.runs()
    runs.claim_customer(rows["cust_0002"])
    runs.finish_customer(rows["cust_0002"], "failed", "boom", "helm Job failed")
    detail = sql("SELECT detail FROM event_outbox WHERE detail_type = %s", events.CUSTOMER_FAILED)[0]["detail"]
    # the counter moved in the same transaction, and the payload already shows it
    assert detail["upgrade"]["failed"] == 1 and detail["upgrade"]["upgradeId"] == str(uid)
    assert detail["customer"]["customerId"] == "cust_0002" and detail["customer"]["error"] == "helm Job failed"
    assert detail["customer"]["status"] == "failed"


def test_a_change_rolled_back_leaves_no_event(make_customers, fake_workflow, sql):
    uid, _, _ = _start(make_customers, sql)
    db = factory.database()
    try:
        with db.transaction() as cur:
            events.upgrade_event(cur, events.UPGRADE_HALTED, uid, "halted:test", {"halt": {"reason": "x"}})
            raise RuntimeError("the change failed after the event was written")
    except RuntimeError:
        pass
    assert events.UPGRADE_HALTED not in _types(sql)


def test_events_of_a_crashed_publisher_are_sent_by_the_next_one(make_customers, fake_workflow, sql, bus):
    # Given changes committed while no publisher ran (it crashed between their commit and its publish)
    uid, _, rows = _start(make_customers, sql)
    runs = factory.runs()
    for customer, log_id in rows.items():
        runs.claim_customer(log_id)
        runs.finish_customer(log_id, "completed", "ok", None)
    recorded = len(_types(sql))
    # When a new publisher drains, twice
    channel = factory.event_channel()
    first = drain(factory.outbox(), [channel])
    second = drain(factory.outbox(), [channel])
    # Then the subscriber got every event once, and nothing is left unsent
    received = bus.receive()
    assert first.sent == recorded and second.sent == 0
    assert sorted(int(e["detail"]["eventId"]) for e in received) == list(range(1, recorded + 1))
    assert {e["source"] for e in received} == {"customer-upgrades"}
    assert sql("SELECT count(*) AS n FROM event_outbox WHERE sent_at IS NULL")[0]["n"] == 0
    upgraded = [e for e in received if e["detail-type"] == events.CUSTOMER_UPGRADED]
    assert sorted(e["detail"]["customer"]["customerId"] for e in upgraded) == sorted(rows)


class FlakyEvents:
    """The real (moto) client, with chosen entries refused the first `times` attempts (a malformed detail:
    PutEvents answers that entry with MalformedDetail and takes the others)."""

    def __init__(self, client: Any, refuse: set[str], times: int) -> None:
        self.client = client
        self.refuse = refuse
        self.left = dict.fromkeys(refuse, times)
        self.calls: list[int] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append(len(Entries))
        sent = []
        for entry in Entries:
            event_id = json.loads(entry["Detail"])["eventId"]
            if self.left.get(event_id, 0) > 0:
                self.left[event_id] -= 1
                entry = {**entry, "Detail": "{not json"}
            sent.append(entry)
        return self.client.put_events(Entries=sent)


def _record(n: int, upgrade_id: int, prefix: str = "test") -> None:
    with factory.database().transaction() as cur:
        for i in range(n):
            events.upgrade_event(cur, events.UPGRADE_STARTED, upgrade_id, f"{prefix}:{i}")


def test_partial_failures_are_retried_and_sent_once(make_customers, fake_workflow, sql, bus):
    uid, _, _ = _start(make_customers, sql, n=1)
    _record(24, uid)
    total = len(_types(sql))
    flaky = FlakyEvents(bus.client, refuse={"3", "12"}, times=2)
    channel = EventBridgeChannel(flaky, "customer-upgrades-events", pause=lambda s: None)
    result = drain(factory.outbox(), [channel])
    received = bus.receive()
    assert result.sent == total and result.failed == 0
    assert sorted(int(e["detail"]["eventId"]) for e in received) == list(range(1, total + 1))
    # batches of 10 entries; the refused entries alone are sent again (twice), in their batch
    assert flaky.calls[:3] == [10, 1, 1] and max(flaky.calls) == 10


def test_entries_refused_past_the_retries_stay_unsent_then_go_later(make_customers, fake_workflow, sql, bus):
    uid, _, _ = _start(make_customers, sql, n=1)
    _record(5, uid)
    flaky = FlakyEvents(bus.client, refuse={"2"}, times=10)
    channel = EventBridgeChannel(flaky, "customer-upgrades-events", pause=lambda s: None)
    first = drain(factory.outbox(), [channel])
    assert first.failed == 1 and "MalformedDetail" in first.errors[0]
    row = sql("SELECT sent_at, attempts, last_error FROM event_outbox WHERE id = 2")[0]
    assert row["sent_at"] is None and row["attempts"] == 1 and "MalformedDetail" in row["last_error"]
    flaky.left["2"] = 0  # the bus takes it again
    second = drain(factory.outbox(), [channel])
    assert second.sent == 1
    ids = [int(e["detail"]["eventId"]) for e in bus.receive()]
    assert sorted(ids) == list(range(1, len(_types(sql)) + 1))


def test_concurrent_publishers_never_send_an_event_twice(make_customers, fake_workflow, sql, bus):
    uid, _, _ = _start(make_customers, sql, n=1)
    _record(60, uid)
    total = len(_types(sql))
    channel = factory.event_channel()
    barrier = threading.Barrier(3)
    results = []

    def publish() -> None:
        outbox = OutboxRepository(factory.database())  # each thread: its own connection
        barrier.wait()
        results.append(drain(outbox, [channel]))
        factory.database().close()

    threads = [threading.Thread(target=publish) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = [int(e["detail"]["eventId"]) for e in bus.receive()]
    assert sorted(ids) == list(range(1, total + 1))  # each once
    assert sum(r.sent for r in results) == total


def test_sent_events_are_purged_after_the_retention_unsent_ones_never(make_customers, fake_workflow, sql, bus):
    uid, _, _ = _start(make_customers, sql, n=1)
    _record(3, uid)
    drain(factory.outbox(), [factory.event_channel()])
    _record(1, uid, prefix="later")  # event 5: not sent
    sql("UPDATE event_outbox SET created_at = NOW() - interval '200 days',"
        " sent_at = CASE WHEN sent_at IS NULL THEN NULL ELSE NOW() - interval '100 days' END WHERE id IN (1, 2, 5)")  # fmt: skip
    assert factory.outbox().purge_sent() == 2
    assert [r["id"] for r in sql("SELECT id FROM event_outbox ORDER BY id")] == [3, 4, 5]
