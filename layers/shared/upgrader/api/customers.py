"""What the fleet API does: customers read and changed (audited), the fleet's spread, syncs on demand."""

from __future__ import annotations

import zoneinfo
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from upgrader.contract.base import from_record
from upgrader.contract.customer_models import (
    MAX_PIN_DAYS,
    ComponentSpread,
    Customer,
    CustomerDetail,
    CustomerEvent,
    CustomerList,
    CustomerPatch,
    CustomerPatchResponse,
    FleetResponse,
    MaintenanceWindow,
    Pin,
    SyncStarted,
    SyncSummary,
    VersionCount,
    parse_timestamp,
)
from upgrader.contract.image_models import FleetImage, FleetImagesResponse
from upgrader.contract.models import iso
from upgrader.fleet.customer_records import CustomerRecord, PinRecord
from upgrader.fleet.image_report import ImageReportRepository
from upgrader.fleet.inventory import CustomerFilter, InventoryRepository
from upgrader.fleet.sync_launcher import SyncLauncher
from upgrader.fleet.syncs import SyncRepository
from upgrader.infra.components import component_names
from upgrader.infra.errors import InvalidValue, SyncNotFound
from upgrader.promotion.rings import RingOrder


def list_customers(
    where: CustomerFilter, *, cursor: str | None, limit: int, inventory: InventoryRepository, order: RingOrder
) -> CustomerList:
    where = replace(where, ring_order=order.names)  # a ring outside the order matches nobody, as any filter
    rows = inventory.list_customers(where, after=cursor, limit=limit + 1)
    page = rows[:limit]
    pins = inventory.pins_of([r.customer_id for r in page])
    customers = [customer_view(r, pins.get(r.customer_id, []), order) for r in page]
    return CustomerList(
        count=len(customers), customers=customers, next_cursor=page[-1].customer_id if len(rows) > limit else None
    )


def get_customer(customer_id: str, *, limit: int, inventory: InventoryRepository, order: RingOrder) -> CustomerDetail:
    row = inventory.get_customer(customer_id)
    pins = inventory.pins_of([customer_id]).get(customer_id, [])
    operations_total, operations = inventory.operations(customer_id, limit)
    history_total, events = inventory.events(customer_id, limit)
    return from_record(
        CustomerDetail,
        row,
        **_customer_facts(row, pins, order),
        operations=operations,
        operations_total=operations_total,
        history=[from_record(CustomerEvent, e) for e in events],
        history_total=history_total,
    )


def patch_customer(
    customer_id: str, patch: CustomerPatch, *, changed_by: str | None, inventory: InventoryRepository, order: RingOrder
) -> CustomerPatchResponse:
    """Apply the patch in one transaction; what changed is recorded in the customer's history with
    who and when (nothing is recorded when nothing changed). An unknown customer is a 404 before the
    values are checked against the world (the zone exists, the pin ends in the future)."""
    inventory.get_customer(customer_id)
    check_patch(patch, now=datetime.now(UTC))
    if patch.ring is not None:
        order.position(patch.ring, "ring")  # UnknownRing (422) naming the field; nothing written
    row, changes = inventory.patch_customer(customer_id, patch, changed_by)
    pins = inventory.pins_of([customer_id]).get(customer_id, [])
    return CustomerPatchResponse(
        customer=customer_view(row, pins, order),
        changes=changes,
        changed_by=changed_by if changes else None,
        changed_at=iso(row.updated_at) if changes else None,
    )


def check_patch(patch: CustomerPatch, *, now: datetime) -> None:
    """What the request's shape cannot say: the window's zone exists; each pin ends in the future, within
    MAX_PIN_DAYS. Raises InvalidValue naming the field."""
    window = patch.maintenance_window
    if window is not None:
        try:
            zoneinfo.ZoneInfo(window.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidValue(
                "maintenanceWindow.timezone",
                f"unknown time zone {window.timezone!r} (an IANA name such as Europe/Berlin)",
            ) from exc
    for component in component_names():
        pin = getattr(patch.pins, component, None) if patch.pins is not None else None
        if pin is None:
            continue
        try:
            ends = parse_timestamp(pin.expires_at)
        except ValueError as exc:
            raise InvalidValue(f"pins.{component}.expiresAt", str(exc)) from exc
        if ends <= now:
            raise InvalidValue(f"pins.{component}.expiresAt", "must be in the future")
        if ends > now + timedelta(days=MAX_PIN_DAYS):
            raise InvalidValue(f"pins.{component}.expiresAt", f"must be at most {MAX_PIN_DAYS} days ahead")


def fleet(*, inventory: InventoryRepository, syncs: SyncRepository, order: RingOrder) -> FleetResponse:
    """For each component, how many existing customers run each version; status, drift, pin and ring counts
    (every ring of the order, a customer without one in the default ring)."""
    counts = inventory.fleet()
    by_ring = dict.fromkeys(order.names, 0)
    for stored, n in counts["byStoredRing"]:
        by_ring[order.ring_of(stored)] += n
    by_status = {status: int(counts["byStatus"].get(status, 0)) for status in ("active", "suspended", "decommissioned")}
    existing = by_status["active"] + by_status["suspended"]
    spread: list[ComponentSpread] = []
    for component in component_names():
        versions = [
            VersionCount(version=r["version"], customers=int(r["n"]))
            for r in counts["versions"]
            if r["component"] == component
        ]
        spread.append(
            ComponentSpread(
                component=component, versions=versions, unknown=existing - sum(v.customers for v in versions)
            )
        )
    last = syncs.latest()
    return FleetResponse(
        customers=existing,
        by_status=by_status,
        drift=counts["drift"],
        pinned=counts["pinned"],
        components=spread,
        rings=list(order.names),
        by_ring=by_ring,
        last_sync=last,
    )


def request_sync(*, requested_by: str | None, syncs: SyncRepository, launcher: SyncLauncher) -> SyncStarted:
    """Start a sync in the background and answer at once; while one is pending or running, that one."""
    row, created = syncs.request("api", requested_by)
    if not created:
        return from_record(
            SyncStarted,
            row,
            message=f"a sync is already {row.status} (sync {row.id}); its result will be at "
            f"/api/customers/sync/{row.id}",
            already_running=True,
        )
    try:
        launcher.launch(row.id, requested_by)
    except BaseException as exc:
        syncs.discard(row.id, f"its worker could not be started: {exc}")
        raise
    return from_record(
        SyncStarted,
        row,
        message=f"sync {row.id} started; its result will be at /api/customers/sync/{row.id}",
        already_running=False,
    )


def get_sync(sync_id: int, *, syncs: SyncRepository) -> SyncSummary:
    row = syncs.get(sync_id)
    if row is None:
        raise SyncNotFound(f"sync {sync_id} not found")
    return row


# ------------------------------------------------------------------------------------------- views
def _customer_facts(record: CustomerRecord, pins: list[PinRecord], order: RingOrder) -> dict[str, Any]:
    """What a customer's answer holds beyond its record's own attributes: its pins, its window as a model, its
    ring as the order reads it."""
    window = record.maintenance_window
    return {
        "ring": order.ring_of(record.ring),
        "versions": dict(sorted(record.versions.items())),
        "drift": record.drift or None,
        "pins": {p.component: from_record(Pin, p) for p in pins},
        "maintenance_window": MaintenanceWindow.model_validate(window, strict=False) if window else None,
    }


def customer_view(record: CustomerRecord, pins: list[PinRecord], order: RingOrder) -> Customer:
    return from_record(Customer, record, **_customer_facts(record, pins, order))


def fleet_images(*, report: ImageReportRepository) -> FleetImagesResponse:
    """Every image digest an existing customer runs or needs for a rollback (docs/images.md)."""
    images, unresolved = report.report()
    return FleetImagesResponse(images=[FleetImage.model_validate(i) for i in images], unresolved=unresolved)
