"""Calling the Kubernetes API: its failures as the two errors the state machine retries or catches, raw
JSON bodies, label selectors. Shared by every reader and writer of the cluster adapter.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from upgrader.cluster.types import ClusterPermanentError, ClusterTransientError


@contextlib.contextmanager
def translated_errors(action: str) -> Iterator[None]:
    """Map client failures to the two named errors the state machine retries or catches."""
    try:
        yield
    except ApiException as exc:
        status = exc.status or 0
        if status in (401, 408, 429) or status >= 500 or status == 0:
            # 401: an EKS token expired between mint and use; the next attempt mints a new one.
            raise ClusterTransientError(f"{action}: HTTP {status} {exc.reason}") from exc
        raise ClusterPermanentError(f"{action}: HTTP {status} {exc.reason}: {short_body(exc)}") from exc
    except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
        raise ClusterTransientError(f"{action}: {type(exc).__name__}: {exc}") from exc


def short_body(exc: ApiException, limit: int = 500) -> str:
    return (exc.body or "")[:limit]


def read_json(response: Any) -> dict[str, Any]:
    """Body of a `_preload_content=False` response as JSON; the connection goes back to the pool."""
    try:
        parsed = json.loads(response.data or b"{}")
    except ValueError as exc:
        raise ClusterTransientError(f"unreadable API response: {exc}") from exc
    finally:
        response.release_conn()
    return parsed if isinstance(parsed, dict) else {}


def labels_match(labels: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


def as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def label_selector(wanted: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in wanted.items())


def api_status(body: str | None) -> dict[str, Any] | None:
    """The API server's own error object (kind Status), or None when the body is something else."""
    try:
        parsed = json.loads(body or "")
    except ValueError:
        return None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("apiVersion") == "v1":
        return parsed
    return None


PROBE_EXCERPT_CHARS = 200  # and quote at most this much of it in the detail


def body_excerpt(text: str | None) -> str:
    status = api_status(text)
    if status is not None and status.get("message"):
        text = str(status["message"])
    flat = " ".join((text or "").split())
    return flat if len(flat) <= PROBE_EXCERPT_CHARS else flat[:PROBE_EXCERPT_CHARS] + "..."
