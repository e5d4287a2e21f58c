"""What the steps share: the state they pass, a log row's helm Job spec, a started Job, a Catch's text, and
how long a step waits for an unreachable Kubernetes API.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from upgrader.cluster.types import HelmJobSpec, HelmOperation, ReleaseInfo
from upgrader.infra.timestamps import iso_seconds
from upgrader.rollout.run_records import LogRecord

State = dict[str, Any]


class ManifestStore(Protocol):
    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> Any: ...  # noqa: N803


def wave_number(state: State) -> int:
    """The wave number (the rows' own) of the state's current position."""
    waves = state.get("waves")
    return int(waves[int(state["wave"])]) if waves else int(state["wave"])


@dataclass(frozen=True, slots=True)
class CarriedLog:
    """The log row's columns a customer's execution carries in its state (see `event_row`)."""

    id: int
    upgrade_id: int
    customer_id: str
    component: str
    namespace: str
    release_name: str
    attempt: int


def row_spec(row: LogRecord | CarriedLog, operation: HelmOperation, *, version: str | None = None, revision: int | None = None,
          chart_version: str | None = None, slot: str | None = None, chart_name: str | None = None,
          also: tuple[tuple[str, str, str | None], ...] = (), digest: str | None = None,
          release: ReleaseInfo | None = None) -> HelmJobSpec:  # fmt: skip
    """A helm operation of one `customer_upgrade_logs` row (its id names the Job: one row, one Job per operation).
    `release`: the release it changes, read just before; which of the images it sets it takes as a tag and a digest
    apart (`ReleaseInfo.digest_values`, docs/images.md), every step that installs an image passes it."""
    sets = {str(row.component), *(component for component, _, _ in also)}
    digest_values = tuple(sorted(sets & release.digest_values)) if release is not None else ()
    return HelmJobSpec(
        upgrade_id=int(row.upgrade_id),
        log_id=int(row.id),
        customer_id=str(row.customer_id),
        component=str(row.component),
        namespace=str(row.namespace),
        release=str(row.release_name),
        operation=operation,
        version=version,
        digest=digest,
        revision=revision,
        attempt=int(row.attempt),
        chart_version=chart_version,
        slot=slot,
        chart_name=chart_name,
        also=also,
        digest_values=digest_values,
    )


def event_row(event: State) -> CarriedLog:
    """The log row's columns a customer's execution carries, under the row's names: its `customer`
    (BeginCustomer's result, camelCase) and ids, translated once here so that `row_spec` reads one shape."""
    customer = event["customer"]
    return CarriedLog(id=event["logId"], upgrade_id=event["upgradeId"], customer_id=customer["customerId"],
                      component=customer["component"], namespace=customer["namespace"],
                      release_name=customer["release"], attempt=customer["attempt"])  # fmt: skip


def started(name: str, operation: str, **extra: Any) -> State:
    return {"jobName": name, "stage": operation, "phase": "pending", **extra}


# How long a customer waits for an unreachable Kubernetes API before it fails (the Job, if it was
# created, keeps running in the cluster: the reconciler records its outcome).
MAX_OUTAGE_SECONDS = 3600


def outage_since(previous: Any, exc: Exception, now: float | None = None) -> float:
    """When the outage began (kept across the wait loop); past MAX_OUTAGE_SECONDS the error is raised."""
    now = time.time() if now is None else now
    since = float((previous or {}).get("unreachableSince") or now) if isinstance(previous, dict) else now
    if now - since > MAX_OUTAGE_SECONDS:
        raise exc
    return since


def epoch_stamp(epoch: float) -> str:
    return iso_seconds(datetime.fromtimestamp(epoch, UTC))


def failure_text(failure: Any) -> str | None:
    """Readable text from a Step Functions Catch result {Error, Cause}."""
    if not failure:
        return None
    if isinstance(failure, str):
        return failure
    error, cause = failure.get("Error", "Error"), failure.get("Cause", "")
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            cause = parsed["errorMessage"]
    except (TypeError, ValueError):
        pass
    return f"{error}: {cause}" if cause else str(error)
