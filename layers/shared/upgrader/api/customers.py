"""What the fleet API does: customers read and changed (audited), the fleet's spread, syncs on demand."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

from upgrader.contract.customer_models import (
    MAX_PIN_DAYS,
    ComponentSpread,
    Customer,
    CustomerDetail,
    CustomerEvent,
    CustomerList,
    CustomerOperation,
    CustomerPatch,
    CustomerPatchResponse,
    DriftEntry,
    FleetResponse,
    MaintenanceWindow,
    Pin,
    SyncStarted,
    SyncSummary,
    VersionCount,
    parse_timestamp,
)
from upgrader.contract.models import iso
from upgrader.fleet.inventory import CustomerFilter, InventoryRepository
from upgrader.fleet.sync_launcher import SyncLauncher
from upgrader.fleet.syncs import SyncRepository
from upgrader.infra.components import component_names
from upgrader.infra.db import Row
from upgrader.infra.errors import InvalidValue, SyncNotFound


def list_customers(
    where: CustomerFilter, *, cursor: str | None, limit: int, inventory: InventoryRepository
) -> CustomerList:
    rows = inventory.list_customers(where, after=cursor, limit=limit + 1)
    page = rows[:limit]
    pins = inventory.pins_of([r["id"] for r in page])
    customers = [customer_view(r, pins.get(r["id"], [])) for r in page]
    return CustomerList(
        count=len(customers), customers=customers, next_cursor=page[-1]["id"] if len(rows) > limit else None
    )


def get_customer(customer_id: str, *, limit: int, inventory: InventoryRepository) -> CustomerDetail:
    row = inventory.get_customer(customer_id)
    pins = inventory.pins_of([customer_id]).get(customer_id, [])
    operations_total, operations = inventory.operations(customer_id, limit)
    history_total, events = inventory.events(customer_id, limit)
    return CustomerDetail(
        **customer_view(row, pins).model_dump(),
        operations=[_operation(o) for o in operations],
        operations_total=operations_total,
        history=[_event(e) for e in events],
        history_total=history_total,
    )


def patch_customer(
    customer_id: str, patch: CustomerPatch, *, changed_by: str | None, inventory: InventoryRepository
) -> CustomerPatchResponse:
    """Apply the patch in one transaction; what changed is recorded in the customer's history with
    who and when (nothing is recorded when nothing changed). An unknown customer is a 404 before the
    values are checked against the world (the zone exists, the pin ends in the future)."""
    inventory.get_customer(customer_id)
    check_patch(patch, now=datetime.now(UTC))
    row, changes = inventory.patch_customer(customer_id, patch, changed_by)
    pins = inventory.pins_of([customer_id]).get(customer_id, [])
    return CustomerPatchResponse(
        customer=customer_view(row, pins),
        changes=changes,
        changed_by=changed_by if changes else None,
        changed_at=iso(row["updated_at"]) if changes else None,
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


def fleet(*, inventory: InventoryRepository, syncs: SyncRepository) -> FleetResponse:
    """For each component, how many existing customers run each version; status, drift and pin counts."""
    counts = inventory.fleet()
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
        last_sync=sync_view(last) if last else None,
    )


def request_sync(*, requested_by: str | None, syncs: SyncRepository, launcher: SyncLauncher) -> SyncStarted:
    """Start a sync in the background and answer at once; while one is pending or running, that one."""
    row, created = syncs.request("api", requested_by)
    if not created:
        return SyncStarted(
            message=f"a sync is already {row['status']} (sync {row['id']}); its result will be at "
            f"/api/customers/sync/{row['id']}",
            sync_id=str(row["id"]),
            status=row["status"],
            already_running=True,
        )
    try:
        launcher.launch(int(row["id"]), requested_by)
    except BaseException as exc:
        syncs.discard(int(row["id"]), f"its worker could not be started: {exc}")
        raise
    return SyncStarted(
        message=f"sync {row['id']} started; its result will be at /api/customers/sync/{row['id']}",
        sync_id=str(row["id"]),
        status=row["status"],
        already_running=False,
    )


def get_sync(sync_id: int, *, syncs: SyncRepository) -> SyncSummary:
    row = syncs.get(sync_id)
    if row is None:
        raise SyncNotFound(f"sync {sync_id} not found")
    return sync_view(row)


# ------------------------------------------------------------------------------------------- views
def customer_view(row: Row, pins: list[Row]) -> Customer:
    drift = row["drift"]
    return Customer(
        customer_id=row["id"],
        namespace=row["namespace"],
        release_name=row["release_name"],
        status=row["status"],
        labels=dict(row["labels"] or {}),
        versions=dict(sorted((row.get("versions") or {}).items())),
        chart_version=row["chart_version"],
        release_revision=row["release_revision"],
        drift={c: DriftEntry(**v) for c, v in drift.items()} if drift else None,
        drift_detected_at=iso(row["drift_detected_at"]),
        pins={
            p["component"]: Pin(
                version=p["version"],
                reason=p["reason"],
                expires_at=iso(p["expires_at"]) or "",
                pinned_by=p["pinned_by"],
                pinned_at=iso(p["pinned_at"]) or "",
                expired=bool(p["expired"]),
            )  # fmt: skip
            for p in pins
        },
        maintenance_window=MaintenanceWindow.model_validate(row["maintenance_window"], strict=False)
        if row["maintenance_window"]
        else None,
        release_error=row["release_error"],
        discovered_at=iso(row["discovered_at"]),
        last_seen_at=iso(row["last_seen_at"]),
        decommissioned_at=iso(row["decommissioned_at"]),
        updated_at=iso(row["updated_at"]) or "",
        updated_by=row["updated_by"],
    )


def sync_view(row: Row) -> SyncSummary:
    return SyncSummary(
        sync_id=str(row["id"]),
        status=row["status"],
        trigger=row["trigger"],
        requested_by=row["requested_by"],
        counts={k: int(v) for k, v in (row["counts"] or {}).items()},
        problems=list(row["problems"] or []),
        error=row["error"],
        created_at=iso(row["created_at"]) or "",
        started_at=iso(row["started_at"]),
        completed_at=iso(row["completed_at"]),
    )


def _operation(row: Row) -> CustomerOperation:
    return CustomerOperation(
        id=row["id"],
        upgrade_id=str(row["upgrade_id"]),
        operation=row["operation"],
        component=row["component"],
        from_version=row["from_version"],
        to_version=row["to_version"],
        status=row["status"],
        wave=row["wave"],
        left_out=row["left_out"],
        revision_before=row["revision_before"],
        revision_after=row["revision_after"],
        error=row["error"],
        started_at=iso(row["started_at"]),
        completed_at=iso(row["completed_at"]),
        created_at=iso(row["created_at"]) or "",
    )


def _event(row: Row) -> CustomerEvent:
    detail: dict[str, Any] = dict(row["detail"] or {})
    return CustomerEvent(
        id=row["id"],
        kind=row["kind"],
        detail=detail,
        actor=row["actor"],
        sync_id=str(row["sync_id"]) if row["sync_id"] is not None else None,
        at=iso(row["created_at"]) or "",
    )
