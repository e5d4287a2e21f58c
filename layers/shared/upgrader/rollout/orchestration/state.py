"""What the steps share: the state they pass, a log row's helm Job spec, a started Job, a Catch's text, and
how long a step waits for an unreachable Kubernetes API.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from upgrader.cluster.types import HelmJobSpec, HelmOperation
from upgrader.infra.db import Row
from upgrader.infra.timestamps import iso_seconds

State = dict[str, Any]


class ManifestStore(Protocol):
    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> Any: ...  # noqa: N803


def wave_number(state: State) -> int:
    """The wave number (the rows' own) of the state's current position."""
    waves = state.get("waves")
    return int(waves[int(state["wave"])]) if waves else int(state["wave"])


@dataclass(frozen=True, slots=True)
class HelmTarget:
    """The log row a helm Job works for: what its spec and name need, read once from the row itself or from the
    state a customer's execution carries (BeginCustomer's result with the ids)."""

    upgrade_id: int
    log_id: int
    customer_id: str
    component: str
    namespace: str
    release: str
    attempt: int

    @classmethod
    def of_row(cls, row: Row) -> HelmTarget:
        """From a `customer_upgrade_logs` row."""
        return cls(int(row["upgrade_id"]), int(row["id"]), str(row["customer_id"]), str(row["component"]),
                   str(row["namespace"]), str(row["release_name"]), int(row["attempt"]))  # fmt: skip

    @classmethod
    def of_event(cls, event: State) -> HelmTarget:
        """From a customer execution's state: its `customer` (BeginCustomer's result), `upgradeId` and `logId`."""
        customer = event["customer"]
        return cls(int(event["upgradeId"]), int(event["logId"]), str(customer["customerId"]),
                   str(customer["component"]), str(customer["namespace"]), str(customer["release"]),
                   int(customer["attempt"]))  # fmt: skip


def row_spec(row: Row | HelmTarget, operation: HelmOperation, *, version: str | None = None, revision: int | None = None,
          chart_version: str | None = None, slot: str | None = None, chart_name: str | None = None) -> HelmJobSpec:  # fmt: skip
    """A helm operation of one log row (its id names the Job: one row, one Job per operation)."""
    target = row if isinstance(row, HelmTarget) else HelmTarget.of_row(row)
    return HelmJobSpec(
        upgrade_id=target.upgrade_id,
        log_id=target.log_id,
        customer_id=target.customer_id,
        component=target.component,
        namespace=target.namespace,
        release=target.release,
        operation=operation,
        version=version,
        revision=revision,
        attempt=target.attempt,
        chart_version=chart_version,
        slot=slot,
        chart_name=chart_name,
    )


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
