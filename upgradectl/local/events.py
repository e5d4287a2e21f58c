"""The local stack's event publisher: the outbox drained, as the publish_events Lambda does in AWS, to
the (moto) EventBridge bus and, since nothing subscribes to that bus locally, straight to the channels
a subscription would feed there: a JSON webhook (`--webhook URL`), Slack (`--slack-api URL`), and the
Prometheus metrics of `GET /metrics`.

Delivery to each channel is recorded per event (`event_deliveries`), so a channel that fails never makes
another receive an event twice, and events reach each channel in their order. A channel that fails is
retried with backoff (up to 30 s) and its error logged; its events stay in the outbox until it takes them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from upgrader.notifications.publisher import Channel, OutboxEvent, OutboxRepository, drain

LOGGER = logging.getLogger("upgrade-local.events")

MAX_BACKOFF_SECONDS = 30.0


class WebhookChannel:
    """POST each event, one at a time and in order, as JSON (EventBridge's event shape) to a URL.

    Transient failures (connection refused or reset, timeouts, 5xx, 429) are retried a few times with
    backoff right away; a 2xx answer is delivery. The event id (`detail.eventId`) is also the `Idempotency-Key`, so a
    receiver can drop the one duplicate a crash between its answer and our record could cause."""

    name = "webhook"
    batch_size = 100  # posted one at a time anyway

    def __init__(self, url: str, *, timeout: float = 5.0, tries: int = 3,
                 pause: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://: {url!r}")
        self.url = url
        self._timeout = timeout
        self._tries = tries
        self._pause = pause

    def send(self, events: Sequence[OutboxEvent]) -> list[str | None]:
        results: list[str | None] = []
        for index, event in enumerate(events):
            error = self._post(event)
            if error is not None:
                later = "not sent: an earlier event is still undelivered"
                return results + [error] + [later] * (len(events) - index - 1)
            results.append(None)
        return results

    def _post(self, event: OutboxEvent) -> str | None:
        data = json.dumps(event.envelope(), default=str).encode("utf-8")
        error = "not sent"
        for attempt in range(self._tries):
            if attempt:
                self._pause(0.25 * 2**attempt)
            request = urllib.request.Request(self.url, data=data, method="POST", headers={  # noqa: S310 - http(s) only
                "Content-Type": "application/json", "User-Agent": "upgrade-local-events",
                "Idempotency-Key": event.payload()["eventId"], "X-Event-Type": event.detail_type,
            })  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - operator's URL
                    response.read()
                    return None
            except urllib.error.HTTPError as exc:
                error = f"POST {self.url} answered HTTP {exc.code} {exc.reason}"
                if exc.code < 500 and exc.code not in (408, 425, 429):
                    return error  # the receiver refuses it: no use retrying at once (later, with backoff)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                error = f"POST {self.url} failed: {reason}"
        return error


class BackoffChannel:
    """A channel that failed is left alone for a while (doubling up to 30 s), so it is not hammered and
    the other channels go on. Logs each failure once per attempt with what to do about it."""

    def __init__(self, inner: Channel, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.name = inner.name
        self.batch_size = inner.batch_size
        self._clock = clock
        self._not_before = 0.0
        self._backoff = 0.0

    def send(self, events: Sequence[OutboxEvent]) -> list[str | None]:
        if self._clock() < self._not_before:
            return ["backing off after a failure"] * len(events)
        results = self.inner.send(events)
        failed = next((r for r in results if r is not None), None)
        if failed is None:
            if self._backoff:
                LOGGER.info("events channel %s delivers again", self.name)
            self._backoff = 0.0
            return results
        self._backoff = min(MAX_BACKOFF_SECONDS, self._backoff * 2 or 0.5)
        self._not_before = self._clock() + self._backoff
        first = next(e for e, r in zip(events, results, strict=True) if r is not None)
        LOGGER.error("events channel %s could not deliver event %s (%s): %s; %d event(s) kept in the outbox, "
                     "retrying in %.1f s", self.name, first.id, first.detail_type, failed,
                     sum(r is not None for r in results), self._backoff)  # fmt: skip
        return results


class LocalEventPublisher:
    """A thread draining the outbox to the channels every `interval` seconds (and at stop, once more)."""

    def __init__(self, outbox: OutboxRepository, channels: Sequence[Channel], *, interval: float = 0.2,
                 on_sent: Callable[[list[OutboxEvent]], None] | None = None,
                 before_each: Callable[[], object] | None = None) -> None:  # fmt: skip
        self.channels = [BackoffChannel(c) for c in channels]
        self._before_each = before_each
        self._outbox = outbox
        self._interval = interval
        self._on_sent = on_sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LocalEventPublisher:
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
        self._thread.start()
        return self

    def publish(self) -> dict[str, Any]:
        """One drain, here and now (after writing the customer notices that are due)."""
        if self._before_each is not None:
            self._before_each()
        return drain(self._outbox, self.channels, on_sent=self._on_sent).as_dict()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.publish()
            except Exception:  # noqa: BLE001 - the database may be restarting: the next round tries again
                LOGGER.warning("publishing events failed; retrying", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            self.publish()  # what the last changes wrote (a channel that is down keeps its events)
        except Exception:  # noqa: BLE001 - best effort on the way out
            LOGGER.debug("last publish failed", exc_info=True)
