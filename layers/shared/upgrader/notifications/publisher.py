"""Drain the event outbox: send each row to its channels in batches, mark it sent, never twice.

One batch (at most 10 rows, PutEvents' limit) is one transaction: the rows are locked (FOR UPDATE SKIP
LOCKED, so concurrent publishers never take the same row), sent, and marked sent before the commit.
- A worker retried after its change committed wrote no second row (the event key is unique).
- A crash between the change's commit and the publish leaves the row unsent: the next drain sends it.
- A channel's per-entry failures (PutEvents' FailedEntryCount) are retried at once, a few times; what
  still fails stays unsent (attempts and last_error say why) and is sent by a later drain, in order.
- With several channels (the local stack: webhook, Slack, EventBridge), each row records the channels
  that took it (`event_deliveries`), so a retry after one channel failed never repeats another.
The one window left: a crash after a channel accepted a batch and before the commit. The next drain
sends that batch again, with the same event ids (`detail.eventId`): consumers drop ids they have seen.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from upgrader.infra.db import Database, Row
from upgrader.infra.redaction import PATTERNS
from upgrader.infra.timestamps import iso
from upgrader.notifications.events import SOURCE

LOGGER = logging.getLogger(__name__)

BATCH_SIZE = 10  # PutEvents takes at most 10 entries
ENTRY_RETRIES = 3  # immediate retries of the entries a channel refused, within one batch
RETENTION_DAYS = 90  # sent events are kept this long (the customer notices of a long upgrade look them up)


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    key: str
    detail_type: str
    severity: str
    component: str | None
    upgrade_id: int | None
    customer_id: str | None
    detail: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> OutboxEvent:
        """An outbox row as every channel sends it: its detail redacted (`upgrader.infra.redaction`), so an error
        or a reason quoting a credential reaches neither EventBridge, the webhook nor Slack."""
        return cls(int(row["id"]), str(row["event_key"]), str(row["detail_type"]), str(row["severity"]),
                   row["component"], row["upgrade_id"], row["customer_id"], PATTERNS.value(dict(row["detail"])),
                   row["created_at"])  # fmt: skip

    @property
    def time(self) -> str:
        return iso(self.created_at.replace(tzinfo=UTC))

    def payload(self) -> dict[str, Any]:
        """The event's detail as every channel sends it: the recorded state plus its identity."""
        return {"eventId": str(self.id), "eventKey": self.key, "severity": self.severity,
                "component": self.component, "occurredAt": self.time, **self.detail}  # fmt: skip

    def envelope(self) -> dict[str, Any]:
        """The event as EventBridge delivers it to its targets (what the webhook and tests receive)."""
        return {"version": "0", "id": str(self.id), "source": SOURCE, "detail-type": self.detail_type,
                "time": self.time, "detail": self.payload()}  # fmt: skip


class Channel(Protocol):
    """Where events go. `send` returns one entry per event: None when taken, else the error in words.

    An ordered channel (a webhook) stops at its first failure and reports the rest as not sent."""

    name: str
    batch_size: int  # at most this many events a call (PutEvents: 10)

    def send(self, events: Sequence[OutboxEvent]) -> list[str | None]: ...


class EventBridgeChannel:
    """PutEvents to the custom bus, 10 entries a call; refused entries are retried (the same call)."""

    name = "eventbridge"
    batch_size = BATCH_SIZE

    def __init__(self, client: Any, bus_name: str, *, pause: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._bus = bus_name
        self._pause = pause

    def send(self, events: Sequence[OutboxEvent]) -> list[str | None]:
        results: list[str | None] = ["not sent"] * len(events)
        todo = list(range(len(events)))
        for attempt in range(ENTRY_RETRIES + 1):
            if not todo:
                break
            if attempt:
                self._pause(0.2 * 2**attempt)
            entries = [self._entry(events[i]) for i in todo]
            try:
                answer = self._client.put_events(Entries=entries)
            except Exception as exc:  # noqa: BLE001 - any refusal of the whole call: the rows stay unsent
                for i in todo:
                    results[i] = f"PutEvents failed: {type(exc).__name__}: {exc}"
                continue
            failed: list[int] = []
            for i, entry in zip(todo, answer.get("Entries") or [], strict=False):
                if entry.get("EventId"):
                    results[i] = None
                else:
                    results[i] = f"{entry.get('ErrorCode', 'Error')}: {entry.get('ErrorMessage', '')}".strip()
                    failed.append(i)
            todo = failed
        return results

    def _entry(self, event: OutboxEvent) -> dict[str, Any]:
        return {
            "Source": SOURCE,
            "DetailType": event.detail_type,
            "Detail": json.dumps(event.payload(), separators=(",", ":"), default=str),
            "EventBusName": self._bus,
            "Time": event.created_at.replace(tzinfo=UTC),
            "Resources": [],
        }


@dataclass
class PublishResult:
    sent: int = 0
    failed: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "batches": self.batches, "errors": self.errors[:10]}


class OutboxRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def publish_batch(
        self, channels: Sequence[Channel], *, limit: int = BATCH_SIZE,
        on_sent: Callable[[list[OutboxEvent]], None] | None = None,
    ) -> PublishResult:  # fmt: skip
        """Lock, send and mark one batch of unsent rows, in id order, in one transaction.

        With several channels each takes, in order, the rows it has not taken yet, up to its batch size, of up
        to ten times `limit` locked rows; so a channel that is down holds back only itself for a while, and
        a slow one (Slack's pace) sees many events at once and coalesces them."""
        result = PublishResult()
        sent: list[OutboxEvent] = []
        track = len(channels) > 1
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT * FROM event_outbox WHERE sent_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (limit * 10 if track else limit,),
            )
            batch = [OutboxEvent.from_row(row) for row in cur.fetchall()]
            if not batch:
                return result
            result.batches = 1
            ids = [e.id for e in batch]
            errors: dict[int, list[str]] = {e.id: [] for e in batch}
            missing: dict[int, int] = dict.fromkeys(ids, len(channels))  # channels that have not taken it
            for channel in channels:
                done: set[int] = set()
                if track:
                    cur.execute(
                        "SELECT event_id FROM event_deliveries WHERE channel = %s AND event_id = ANY(%s)",
                        (channel.name, ids),
                    )
                    done = {int(r["event_id"]) for r in cur.fetchall()}
                for event_id in done:
                    missing[event_id] -= 1
                todo = [e for e in batch if e.id not in done][
                    : min(limit, channel.batch_size) if not track else channel.batch_size
                ]
                if not todo:
                    continue
                outcomes = channel.send(todo)
                taken = [e.id for e, error in zip(todo, outcomes, strict=True) if error is None]
                for event, error in zip(todo, outcomes, strict=True):
                    if error is None:
                        missing[event.id] -= 1
                    else:
                        errors[event.id].append(f"{channel.name}: {error}")
                if track and taken:
                    cur.execute(
                        "INSERT INTO event_deliveries (event_id, channel) SELECT unnest(%s::bigint[]), %s"
                        " ON CONFLICT DO NOTHING",
                        (taken, channel.name),
                    )
            sent = [e for e in batch if missing[e.id] == 0]
            unsent = [e for e in batch if errors[e.id]]
            if sent:
                cur.execute("UPDATE event_outbox SET sent_at = NOW(), attempts = attempts + 1, last_error = NULL"
                            " WHERE id = ANY(%s)", ([e.id for e in sent],))  # fmt: skip
            for event in unsent:
                text = "; ".join(errors[event.id])[:2000]
                cur.execute(
                    "UPDATE event_outbox SET attempts = attempts + 1, last_error = %s WHERE id = %s", (text, event.id)
                )
                result.errors.append(f"event {event.id} ({event.detail_type}): {text}")
            result.sent, result.failed = len(sent), len(unsent)
        if sent and on_sent is not None:
            try:
                on_sent(sent)
            except Exception:  # noqa: BLE001 - metrics must never hold events back
                LOGGER.exception("recording metrics of sent events failed")
        return result

    def purge_sent(self, days: int = RETENTION_DAYS) -> int:
        """Forget events sent more than `days` ago (unsent ones are kept, whatever their age)."""
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM event_outbox WHERE sent_at IS NOT NULL AND sent_at < NOW() - make_interval(days => %s)",
                (days,),
            )
            return cur.rowcount

    def unsent(self) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM event_outbox WHERE sent_at IS NULL")
            row = cur.fetchone()
            return int(row["n"]) if row else 0

    def events(self, *, upgrade_id: int | None = None, after_id: int = 0, limit: int = 1000) -> list[OutboxEvent]:
        """Recorded events in order (tests, the local stack's views)."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT * FROM event_outbox WHERE id > %s AND (%s::int IS NULL OR upgrade_id = %s) ORDER BY id LIMIT %s",
                (after_id, upgrade_id, upgrade_id, limit),
            )
            return [OutboxEvent.from_row(row) for row in cur.fetchall()]

    def event(self, event_id: int) -> OutboxEvent | None:
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM event_outbox WHERE id = %s", (event_id,))
            row = cur.fetchone()
            return OutboxEvent.from_row(row) if row else None


def drain(
    outbox: OutboxRepository, channels: Sequence[Channel], *, max_batches: int = 100,
    on_sent: Callable[[list[OutboxEvent]], None] | None = None,
) -> PublishResult:  # fmt: skip
    """Send batches until the outbox is empty, a batch fails (retried by the next drain, in order), or
    max_batches were sent."""
    total = PublishResult()
    for _ in range(max_batches):
        batch = outbox.publish_batch(channels, on_sent=on_sent)
        total.sent += batch.sent
        total.failed += batch.failed
        total.batches += batch.batches
        total.errors.extend(batch.errors)
        if batch.batches == 0 or batch.failed:
            break
    return total


def drain_for(
    outbox: OutboxRepository, channels: Sequence[Channel], *, seconds: float, idle_pause: float = 2.0,
    on_sent: Callable[[list[OutboxEvent]], None] | None = None, before_each: Callable[[], object] | None = None,
    clock: Callable[[], float] = time.monotonic, pause: Callable[[float], None] = time.sleep,
) -> PublishResult:  # fmt: skip
    """Drain, then keep looking for new rows every `idle_pause` seconds until `seconds` have passed (one
    scheduled invocation a minute then publishes within seconds of each change). After a failed batch
    the pause doubles (up to 30 s): a channel that is down is not hammered."""
    total = PublishResult()
    deadline = clock() + seconds
    backoff = idle_pause
    while True:
        if before_each is not None:
            before_each()  # what is due now (customer notices) goes out in this drain
        result = drain(outbox, channels, on_sent=on_sent)
        total.sent += result.sent
        total.failed += result.failed
        total.batches += result.batches
        total.errors.extend(result.errors)
        backoff = min(backoff * 2, 30.0) if result.failed else idle_pause
        if clock() + backoff >= deadline:
            return total
        pause(backoff)
