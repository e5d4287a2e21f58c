"""Answer a CloudFormation custom resource request (PUT to the pre-signed ResponseURL)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

# Delivery of the answer: a few tries with back-off, within the invocation's remaining time. A
# transient failure (network, S3 5xx, 408/429) is retried; another 4xx (the URL expired or was
# refused) is not, since the same URL will not be accepted later.
SEND_ATTEMPTS = 5
SEND_BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0)
SEND_TIMEOUT_SECONDS = 20.0
TIME_MARGIN_SECONDS = 5.0
_sleep: Callable[[float], None] = time.sleep  # tests replace it


class ResponseNotDelivered(Exception):
    """CloudFormation's ResponseURL did not take the answer after every try."""


def send(
    event: dict[str, Any],
    context: Any,
    status: str,
    data: dict[str, Any],
    reason: str | None = None,
) -> int:
    """PUT the answer to the ResponseURL, retrying transient failures; returns the attempts it took.

    Raises ResponseNotDelivered (with the last error as its cause) when no attempt got through."""
    url = event["ResponseURL"]
    if not url.startswith("https://"):
        raise ValueError("ResponseURL must be https")
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or f"see CloudWatch log stream {context.log_stream_name}",
            "PhysicalResourceId": event.get("PhysicalResourceId") or "database-migrations",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    last: Exception | None = None
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            _put(url, body)
            return attempt
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code not in (408, 429):
                raise ResponseNotDelivered(f"the ResponseURL refused the {status} answer: HTTP {exc.code}") from exc
            last = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # TimeoutError is an OSError
            last = exc
        if attempt == SEND_ATTEMPTS:
            break
        pause = SEND_BACKOFF_SECONDS[min(attempt, len(SEND_BACKOFF_SECONDS)) - 1]
        if _seconds_left(context) < pause + SEND_TIMEOUT_SECONDS + TIME_MARGIN_SECONDS:
            break
        _sleep(pause)
    raise ResponseNotDelivered(f"the {status} answer was not delivered: {type(last).__name__}: {last}") from last


def _put(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS) as response:  # noqa: S310 - https checked
        response.read()


def _seconds_left(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000.0 if callable(remaining) else float("inf")
