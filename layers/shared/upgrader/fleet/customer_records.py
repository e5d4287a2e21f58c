"""Typed records of the customer inventory as the fleet API reads it (mapped once, by column name).

A record's fields are its columns' names (or the API's name, given in the SELECT with AS); a response is
validated from a record's attributes (`upgrader.contract.base.from_record`), with no field-by-field copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """One `customers` row with the versions its release holds (component -> version)."""

    customer_id: str
    namespace: str
    release_name: str
    status: str
    labels: dict[str, str]
    maintenance_window: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    chart_version: str | None
    release_revision: int | None
    discovered_at: datetime | None
    last_seen_at: datetime | None
    last_seen_sync_id: int | None
    decommissioned_at: datetime | None
    drift: dict[str, dict[str, Any]] | None
    drift_detected_at: datetime | None
    release_error: str | None
    updated_by: str | None
    ring: str | None  # as stored: None is the order's default ring (upgrader.promotion.rings)
    ring_from_label: bool  # read from the namespace's ring label at the last sync (PATCH may not change it)
    versions: dict[str, str]


@dataclass(frozen=True, slots=True)
class PinRecord:
    """One `customer_pins` row, and whether it has expired."""

    customer_id: str
    component: str
    version: str
    reason: str
    expires_at: datetime
    pinned_by: str | None
    pinned_at: datetime
    expired: bool


@dataclass(frozen=True, slots=True)
class CustomerEventRecord:
    """One `customer_events` row."""

    id: int
    kind: str
    detail: dict[str, Any]
    actor: str | None
    sync_id: str | None
    at: datetime
