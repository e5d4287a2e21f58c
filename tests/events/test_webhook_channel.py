"""The local webhook channel: what a receiver gets with each event (docs/howto/notifications.md "On the local stack", docs/events)."""

from __future__ import annotations

from datetime import datetime

from upgrader.notifications import events
from upgrader.notifications.publisher import OutboxEvent

from tests.support.receiver import Receiver
from upgradectl.local.events import WebhookChannel


def test_the_idempotency_key_header_is_the_event_id_the_docs_name():
    """Receivers drop an event id they have seen: the header and `detail.eventId` are one value.

    Breakage tried: the header as it was, `event-<id>`: fails here."""
    event = OutboxEvent(4217, "customer:9:r:1", events.CUSTOMER_UPGRADED, "info", "api", 7, "cust_1",
                        {"upgrade": {"upgradeId": "7"}}, datetime(2026, 1, 2, 3, 4, 5))  # fmt: skip
    with Receiver() as receiver:
        assert WebhookChannel(f"{receiver.url}/events").send([event]) == [None]
        (path, body, headers, _), *rest = receiver.requests
    assert rest == [] and path == "/events"
    assert body["detail"]["eventId"] == "4217"
    assert headers["Idempotency-Key"] == body["detail"]["eventId"]
    assert headers["X-Event-Type"] == "Customer Upgraded" and headers["Content-Type"] == "application/json"
