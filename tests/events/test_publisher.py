"""The outbox publisher detail by detail (issue 27's mutation run): several channels at once (the local stack's
webhook, Slack and metrics), batch sizes, the drain loops' stops and pauses, retention and the reads, on the real
database with channels that record what they are given; EventBridge's entries with a recording client."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from upgrader import factory
from upgrader.notifications import events
from upgrader.notifications.publisher import EventBridgeChannel, OutboxEvent, PublishResult, drain, drain_for


class Recording:
    """A channel that takes every event but those it is told to refuse, and records each call's event ids."""

    def __init__(self, name: str, batch_size: int = 10, refuse: set[int] | None = None, error: str = "down") -> None:
        self.name, self.batch_size = name, batch_size
        self.refuse = refuse if refuse is not None else set()
        self.error = error
        self.calls: list[list[int]] = []

    def send(self, batch: Sequence[OutboxEvent]) -> list[str | None]:
        self.calls.append([e.id for e in batch])
        return [self.error if e.id in self.refuse else None for e in batch]


def _record(n: int, prefix: str = "e") -> list[int]:
    """n drift events (they need no upgrade), in order; their ids."""
    with factory.database().transaction() as cur:
        for i in range(n):
            events.plain_event(cur, events.DRIFT_FOUND, f"{prefix}:{i}", {"n": i}, component="api", customer_id="c1")
    return [int(r["id"]) for r in _rows()][-n:]


def _rows() -> list[dict[str, Any]]:
    with factory.database().transaction() as cur:
        cur.execute("SELECT id, sent_at, attempts, last_error FROM event_outbox ORDER BY id")
        return list(cur.fetchall())


def _unsent() -> list[int]:
    return [int(r["id"]) for r in _rows() if r["sent_at"] is None]


def _deliveries() -> set[tuple[int, str]]:
    with factory.database().transaction() as cur:
        cur.execute("SELECT event_id, channel FROM event_deliveries")
        return {(int(r["event_id"]), str(r["channel"])) for r in cur.fetchall()}


def test_with_several_channels_a_row_is_sent_once_every_channel_took_it_and_none_gets_it_twice(env):
    """mutants: publisher.py:156 `len(channels) > 1` → `> 2` / `>= 1`; :168 `len(channels)` mutated; :177-178
    the channels that took it before; :188 `missing[...] -= 1` → `= 1` / `+= 1`; :191 `track and taken` →
    `or`; :197 `missing[e.id] == 0` → `!= 0` / `== 1`."""
    first, second, third = _record(3)
    webhook, slack = Recording("webhook"), Recording("slack", refuse={second})
    outbox = factory.outbox()

    result = outbox.publish_batch([webhook, slack])

    assert (result.sent, result.failed, result.batches) == (2, 1, 1)
    assert _unsent() == [second]
    assert _deliveries() == {(first, "webhook"), (second, "webhook"), (third, "webhook"), (first, "slack"),
                             (third, "slack")}  # fmt: skip
    slack.refuse.clear()
    again = outbox.publish_batch([webhook, slack])
    assert (again.sent, again.failed) == (1, 0) and _unsent() == []
    assert webhook.calls == [[first, second, third]]  # the webhook, which took it, is not sent it again
    assert slack.calls == [[first, second, third], [second]]


def test_a_failed_row_records_each_channels_error_and_its_attempt(env):
    """mutants: publisher.py:190 the error's text; :198-207 (`errors[e.id]`, the `"; "` join, the 2000-character
    bound, `attempts + 1`, the result's errors); :200 the sent rows' `attempts + 1`, `last_error = NULL`."""
    (event_id,) = _record(1)
    long = "x" * 2500
    result = factory.outbox().publish_batch([Recording("webhook", refuse={event_id}, error=long),
                                             Recording("slack", refuse={event_id}, error="503")])  # fmt: skip
    (row,) = _rows()
    assert row["sent_at"] is None and row["attempts"] == 1
    assert row["last_error"] == f"webhook: {long}"[:2000]
    assert result.errors == [f"event {event_id} ({events.DRIFT_FOUND}): {row['last_error']}"]

    short = factory.outbox().publish_batch([Recording("webhook", refuse={event_id}, error="timeout"),
                                            Recording("slack", refuse={event_id}, error="503")])  # fmt: skip
    (row,) = _rows()
    assert row["attempts"] == 2 and row["last_error"] == "webhook: timeout; slack: 503"
    assert short.failed == 1
    factory.outbox().publish_batch([Recording("webhook")])
    (row,) = _rows()
    assert row["sent_at"] is not None and row["attempts"] == 3 and row["last_error"] is None


def test_one_channel_takes_at_most_the_limit_and_its_batch_size(env):
    """mutants: publisher.py:160 `limit * 10 if track else limit` mutated; :180 `min(limit, batch_size)` mutated;
    :146 `limit: int = BATCH_SIZE`."""
    ids = _record(25)
    small = Recording("webhook", batch_size=4)
    assert factory.outbox().publish_batch([small]).sent == 4
    wide = Recording("webhook", batch_size=100)
    assert factory.outbox().publish_batch([wide], limit=3).sent == 3
    assert factory.outbox().publish_batch([wide]).sent == 10  # the default limit: PutEvents' 10
    assert small.calls == [ids[:4]] and wide.calls == [ids[4:7], ids[7:17]]
    assert _deliveries() == set()  # one channel: the row's sent_at is its record


def test_several_channels_lock_ten_times_the_limit_and_each_takes_its_own_batch(env):
    """A slow channel (Slack's pace) sees many events at once; the others are not held to its size.
    mutants: publisher.py:160 `limit * 10` → `limit * 11` / `limit / 10`; :180 `channel.batch_size` mutated."""
    ids = _record(30)
    wide, narrow = Recording("slack", batch_size=100), Recording("webhook", batch_size=4)
    result = factory.outbox().publish_batch([wide, narrow], limit=2)
    assert wide.calls == [ids[:20]] and narrow.calls == [ids[:4]]
    assert result.sent == 4 and result.failed == 0


def test_on_sent_gets_the_sent_rows_and_its_failure_holds_nothing_back(env, caplog):
    """mutants: publisher.py:209 `sent and on_sent is not None` → `or` / `is None`; :213 the logged message."""
    first, second = _record(2)
    seen: list[list[int]] = []
    factory.outbox().publish_batch(
        [Recording("webhook", refuse={second})], on_sent=lambda s: seen.append([e.id for e in s])
    )
    factory.outbox().publish_batch([Recording("webhook", refuse={second})], on_sent=lambda s: seen.append([0]))
    assert seen == [[first]]  # nothing sent: not called

    def broken(sent: list[OutboxEvent]) -> None:
        raise RuntimeError("metrics are down")

    with caplog.at_level(logging.ERROR, logger="upgrader.notifications.publisher"):
        result = factory.outbox().publish_batch([Recording("webhook")], on_sent=broken)
    assert result.sent == 1 and _unsent() == []
    assert [r.getMessage() for r in caplog.records] == ["recording metrics of sent events failed"]


def test_drain_stops_at_an_empty_outbox_a_failure_or_max_batches(env):
    """mutants: publisher.py:254-261 (the totals, `batch.batches == 0 or batch.failed`, `max_batches`)."""
    ids = _record(25)
    assert drain(factory.outbox(), [Recording("webhook")], max_batches=2).as_dict() == {
        "sent": 20, "failed": 0, "batches": 2, "errors": []}  # fmt: skip
    failing = Recording("webhook", refuse={ids[22]})
    stopped = drain(factory.outbox(), [failing])
    assert (stopped.sent, stopped.failed, stopped.batches) == (4, 1, 1) and len(stopped.errors) == 1
    failing.refuse.clear()
    rest = drain(factory.outbox(), [failing])
    assert (rest.sent, rest.batches) == (1, 1) and failing.calls[-1] == [ids[22]]


def test_as_dict_keeps_the_first_ten_errors():
    """mutants: publisher.py:138 `errors[:10]` → `errors[:11]`."""
    result = PublishResult(errors=[f"e{i}" for i in range(12)])
    assert result.as_dict()["errors"] == [f"e{i}" for i in range(10)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_drain_for_polls_at_the_idle_pause_until_the_time_is_up(env):
    """The publish function's invocation relies on the default pause of 2 s. mutants: publisher.py:266
    `idle_pause: float = 2.0` → `3.0`; :274-287 (`clock() + seconds`, `clock() + backoff >= deadline`, the
    totals, `before_each` called each round)."""
    clock, rounds = Clock(), []
    _record(3)
    total = drain_for(factory.outbox(), [Recording("webhook")], seconds=10,
                      before_each=lambda: rounds.append(clock.now), clock=lambda: clock.now, pause=clock.pause)  # fmt: skip
    assert clock.pauses == [2.0, 2.0, 2.0, 2.0]  # at 8 s the next round would end after the deadline
    assert rounds == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert (total.sent, total.failed, total.batches) == (3, 0, 1)


def test_drain_for_backs_off_from_a_failing_channel_up_to_30_seconds_then_returns_to_the_idle_pause(env):
    """mutants: publisher.py:284 `min(backoff * 2, 30.0)` mutated, `if result.failed` → `if not ...`; the totals."""
    (event_id,) = _record(1)
    clock = Clock()
    channel = Recording("webhook", refuse={event_id})

    def heal() -> None:
        if clock.now >= 58:
            channel.refuse.clear()

    total = drain_for(factory.outbox(), [channel], seconds=100, idle_pause=2.0, before_each=heal,
                      clock=lambda: clock.now, pause=clock.pause)  # fmt: skip
    assert clock.pauses[:6] == [4.0, 8.0, 16.0, 30.0, 2.0, 2.0]
    assert (total.sent, total.failed) == (1, 4) and len(total.errors) == 4


def test_purge_keeps_unsent_rows_and_rows_sent_within_the_days(env):
    """mutants: publisher.py:34 `RETENTION_DAYS = 90` → `91`; :220 the query's bounds."""
    old, recent, unsent = _record(3)
    drain(factory.outbox(), [Recording("webhook", refuse={unsent})])
    with factory.database().transaction() as cur:
        cur.execute("UPDATE event_outbox SET sent_at = NOW() - interval '90 days 12 hours' WHERE id = %s", (old,))
        cur.execute("UPDATE event_outbox SET sent_at = NOW() - interval '89 days 12 hours' WHERE id = %s", (recent,))
        cur.execute("UPDATE event_outbox SET created_at = NOW() - interval '400 days' WHERE id = %s", (unsent,))
    assert factory.outbox().purge_sent() == 1
    assert factory.outbox().purge_sent(days=88) == 1
    assert [r["id"] for r in _rows()] == [unsent]
    assert factory.outbox().unsent() == 1


def test_the_reads_filter_by_upgrade_and_position(env):
    """mutants: publisher.py:225-244 (`unsent`, `events`' filters and limit, `event` of an unknown id)."""
    ids = _record(4)
    outbox = factory.outbox()
    with factory.database().transaction() as cur:
        cur.execute("UPDATE event_outbox SET upgrade_id = 7 WHERE id = ANY(%s)", (ids[1:3],))
    assert outbox.unsent() == 4
    assert [e.id for e in outbox.events()] == ids
    assert [e.id for e in outbox.events(upgrade_id=7)] == ids[1:3]
    assert [e.id for e in outbox.events(after_id=ids[1], limit=1)] == [ids[2]]
    assert outbox.event(ids[3]) is not None and outbox.event(ids[3]).key == "e:3"  # type: ignore[union-attr]
    assert outbox.event(ids[3] + 100) is None


def _event() -> OutboxEvent:
    """Made when a test runs, not at import (a collection error is what mutmut 2 counts as a survivor)."""
    return OutboxEvent(42, "drift:cust_1:1", events.DRIFT_FOUND, "attention", "api", None, "cust_1",
                       {"customer": {"customerId": "cust_1"}}, datetime(2026, 3, 4, 5, 6, 7, 890000))  # fmt: skip


def test_an_event_is_sent_with_its_identity_and_a_utc_time():
    """mutants: publisher.py:59-69 (the payload's and envelope's keys, `version "0"`, the UTC time)."""
    event = _event()
    assert event.payload() == {"eventId": "42", "eventKey": "drift:cust_1:1", "severity": "attention",
                               "component": "api", "occurredAt": "2026-03-04T05:06:07.890Z",
                               "customer": {"customerId": "cust_1"}}  # fmt: skip
    assert event.envelope() == {"version": "0", "id": "42", "source": "customer-upgrades", "detail-type": events.DRIFT_FOUND,
                                "time": "2026-03-04T05:06:07.890Z", "detail": event.payload()}  # fmt: skip


class RecordingEvents:
    """boto3's events client as the channel calls it: answers each call from `answers` in turn."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls.append(Entries)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


def test_an_eventbridge_entry_is_the_event_on_the_bus():
    """mutants: publisher.py:120-127 (Source, DetailType, the compact Detail, EventBusName, a UTC Time, no
    Resources)."""
    event = _event()
    client = RecordingEvents({"Entries": [{"EventId": "1"}]})
    assert EventBridgeChannel(client, "bus-1").send([event]) == [None]
    ((entry,),) = client.calls
    assert entry == {"Source": "customer-upgrades", "DetailType": events.DRIFT_FOUND,
                     "Detail": json.dumps(event.payload(), separators=(",", ":")), "EventBusName": "bus-1",
                     "Time": datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC), "Resources": []}  # fmt: skip


def test_eventbridge_retries_refused_entries_three_times_with_growing_pauses():
    """mutants: publisher.py:97-116 (`ENTRY_RETRIES + 1`, `if attempt`, `0.2 * 2**attempt`, the error text with
    its defaults, only the refused entries sent again)."""
    event = _event()
    refused = {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}
    client = RecordingEvents({"Entries": [{"EventId": "1"}, refused]}, {"Entries": [{}]}, {"Entries": [refused]},
                             {"Entries": [refused]})  # fmt: skip
    pauses: list[float] = []
    other = OutboxEvent(43, "k43", events.DRIFT_FOUND, "attention", None, None, None, {}, event.created_at)
    assert EventBridgeChannel(client, "bus", pause=pauses.append).send([event, other]) == [
        None, "ThrottlingException: slow down"]  # fmt: skip
    assert pauses == [0.4, 0.8, 1.6]
    assert [len(c) for c in client.calls] == [2, 1, 1, 1]
    assert json.loads(client.calls[1][0]["Detail"])["eventId"] == "43"

    bare = RecordingEvents({"Entries": [{}]}, {"Entries": [{"EventId": "9"}]})
    assert EventBridgeChannel(bare, "bus", pause=pauses.append).send([event]) == [None]


def test_eventbridge_refusing_the_whole_call_or_answering_nothing_leaves_the_events_unsent():
    """mutants: publisher.py:95 `"not sent"`, :107 the error text, :108 `continue` → `break`; :114 the defaults
    `'Error'`, `''`."""
    event = _event()
    down = RecordingEvents(*[ConnectionError("no route")] * 4)
    assert EventBridgeChannel(down, "bus", pause=lambda s: None).send([event]) == [
        "PutEvents failed: ConnectionError: no route"]  # fmt: skip
    assert len(down.calls) == 4
    silent = RecordingEvents({})
    assert EventBridgeChannel(silent, "bus", pause=lambda s: None).send([event]) == ["not sent"]
    bare = RecordingEvents(*[{"Entries": [{}]}] * 4)
    assert EventBridgeChannel(bare, "bus", pause=lambda s: None).send([event]) == ["Error:"]


@pytest.mark.parametrize("secret", ["password=hunter2", "https://deploy:s3cr3t@registry.example"])
def test_a_row_read_from_the_outbox_is_redacted(env, secret):
    """mutants: publisher.py:53-55 (`PATTERNS.value` dropped, fields out of place)."""
    with factory.database().transaction() as cur:
        events.plain_event(cur, events.DRIFT_FOUND, "k", {"reason": f"helm said {secret}"}, component="api",
                           customer_id="cust_9")  # fmt: skip
    (event,) = factory.outbox().events()
    assert "hunter2" not in json.dumps(event.payload()) and "s3cr3t" not in json.dumps(event.payload())
    assert "[redacted]" in event.detail["reason"]
    assert (event.key, event.detail_type, event.severity, event.component, event.customer_id, event.upgrade_id) == (
        "k", events.DRIFT_FOUND, "attention", "api", "cust_9", None)  # fmt: skip


def test_one_drain_sends_at_most_a_hundred_batches_and_the_reads_stop_at_a_thousand(env):
    """The publish function drains with the defaults: 100 batches of 10 (then the next round goes on).
    mutants: publisher.py:248 `max_batches: int = 100` → `101`; :231 `limit: int = 1000` → `1001`."""
    _record(1005)
    result = drain(factory.outbox(), [Recording("webhook")])
    assert (result.sent, result.batches) == (1000, 100)
    assert len(factory.outbox().events()) == 1000


def test_a_row_eventbridge_refused_says_so_in_its_last_error(env):
    """What the operator reads in the outbox (and the publish function's log). mutants: publisher.py:86
    `name = "eventbridge"` → `"XXeventbridgeXX"`."""
    _record(1)
    down = RecordingEvents(*[ConnectionError("no route")] * 4)
    drain(factory.outbox(), [EventBridgeChannel(down, "bus", pause=lambda s: None)])
    (row,) = _rows()
    assert row["last_error"] == "eventbridge: PutEvents failed: ConnectionError: no route"


def test_a_row_the_first_channel_refused_is_sent_once_it_takes_it_after_the_others_did(env):
    """The mirror of the test above: the first channel catches up, the second took the row already.
    mutants: publisher.py:178 `missing[event_id] -= 1` → `= 1`."""
    (event_id,) = _record(1)
    slack, webhook = Recording("slack", refuse={event_id}), Recording("webhook")
    assert factory.outbox().publish_batch([slack, webhook]).sent == 0
    slack.refuse.clear()
    assert factory.outbox().publish_batch([slack, webhook]).sent == 1
    assert _unsent() == [] and webhook.calls == [[event_id]]
