"""Request and response models of the fleet API: customers, pins, windows, syncs, the fleet, plans."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, create_model, field_validator, model_validator

from upgrader.contract.base import (
    FREE_TEXT_PATTERN,
    TIMESTAMP_PATTERN,
    WHOLE,
    LabelKey,
    LabelValue,
    Model,
    StrictModel,
    Timestamp,
    Version,
    label_map_schema,
)
from upgrader.infra.components import REGISTRY

CustomerStatus = Literal["active", "suspended", "decommissioned"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAX_PIN_DAYS = 366
# An IANA time zone name (Europe/Berlin, UTC, America/Argentina/Buenos_Aires): no dots, no leading '/'.
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]{0,31}(/[A-Za-z0-9_+-]{1,32}){0,2}$"
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# An RFC 3339 time with its offset: 2026-12-01T00:00:00Z, 2026-12-01T02:00:00+01:00.
REASON_PATTERN = FREE_TEXT_PATTERN


def _not_nullable(schema: dict[str, Any]) -> None:
    """The document says what the validators enforce: this field may be left out, never sent as null.

    (`X | None` keeps pydantic's error locations plain, "pins.api.reason"; the null is removed here.)"""
    schema.pop("default", None)
    options = [o for o in schema.pop("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        schema.update({k: v for k, v in options[0].items() if k not in schema})
    elif options:
        schema["anyOf"] = options


def _only_true_schema(schema: dict[str, Any]) -> None:
    _not_nullable(schema)
    schema["const"] = True


class IncompatibleCustomer(Model):
    customer_id: str
    rule_id: str
    rule: str = Field(description="the rule in words")
    detail: str = Field(description="what the customer would run that breaks it")


class MaintenanceWindow(StrictModel):
    """When a customer may be changed: on these days, from `start` (local time in `timezone`) for
    `durationMinutes`. That the zone exists is checked with the customer (`check_patch`)."""

    timezone: Annotated[str, StringConstraints(pattern=TIMEZONE_PATTERN, max_length=64)] = Field(
        description="IANA time zone, e.g. Europe/Berlin"
    )
    days: Annotated[list[Weekday], Field(min_length=1, max_length=7, json_schema_extra={"uniqueItems": True})] = Field(
        description="weekdays the window opens on"
    )
    start: Annotated[str, StringConstraints(pattern=CLOCK_PATTERN)] = Field(description="local opening time, HH:MM")
    duration_minutes: Annotated[int, Field(ge=15, le=1440), WHOLE] = Field(description="how long the window stays open")

    @field_validator("days")
    @classmethod
    def _unique_days(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("days contains duplicates")
        return value


class PinRequest(StrictModel):
    """Keep a component at a version: deploys of it leave the customer out until the pin expires."""

    version: Version | None = Field(
        default=None, description="the version to keep (default: the version the customer runs now)"
    )
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=REASON_PATTERN)] = Field(
        description="why (shown wherever the customer is left out)"
    )
    expires_at: Annotated[str, StringConstraints(pattern=TIMESTAMP_PATTERN, max_length=40)] = Field(
        description=f"when the pin ends: RFC 3339, in the future, at most {MAX_PIN_DAYS} days ahead (checked with "
        "the customer: a 422 naming the field)"
    )


def parse_timestamp(value: str) -> datetime:
    if not re.match(TIMESTAMP_PATTERN, value):
        raise ValueError("not an RFC 3339 time with offset, e.g. 2026-12-01T00:00:00Z")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid time: {exc}") from exc


class _Pins(StrictModel):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    @model_validator(mode="after")
    def _something(self) -> _Pins:
        if not self.model_fields_set:
            raise ValueError("pins names no component")
        return self


def pins_model() -> type[_Pins]:
    """The pins patch: one optional field per registered component (its `pin_field`)."""
    # The wire name is the component's name as it is (not camelCased: a component may be named "log_shipper").
    fields: dict[str, Any] = {
        spec.pin_field: (PinRequest | None, Field(default=None, alias=spec.pin_field)) for spec in REGISTRY
    }
    return create_model(  # type: ignore[call-overload,no-any-return]
        "PinsPatch",
        __base__=_Pins,
        __doc__="Per component: a pin to set, or null to remove the component's pin.",
        __module__=__name__,
        **fields,
    )


if TYPE_CHECKING:
    PinsPatch = _Pins
else:
    PinsPatch = pins_model()


class CustomerPatch(StrictModel):
    """What may change about a customer; every field is optional, at least one is given.

    labels merge (a null value removes that label); maintenanceWindow null removes the window; a pin
    null removes that component's pin."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    labels: (
        Annotated[
            dict[LabelKey, LabelValue | None],
            Field(min_length=1, max_length=20, json_schema_extra=label_map_schema),
        ]
        | None
    ) = Field(
        default=None, description="labels to set; a null value removes the label", json_schema_extra=_not_nullable
    )
    maintenance_window: MaintenanceWindow | None = Field(
        default=None, description="the customer's maintenance window; null removes it"
    )
    pins: PinsPatch | None = Field(
        default=None, description="pins to set (or null to remove), per component", json_schema_extra=_not_nullable
    )
    status: Literal["active", "suspended"] | None = Field(
        default=None,
        description="active, or suspended (left out of every deploy); decommissioned is for discovery",
        json_schema_extra=_not_nullable,
    )
    acknowledge_drift: bool | None = Field(
        default=None,
        description="true: the drift was looked at; clear the customer's drift mark (only true)",
        json_schema_extra=_only_true_schema,
    )
    ring: LabelValue | None = Field(
        default=None,
        description="the customer's ring (one of GET /api/fleet's rings); null returns it to the default ring (the "
        "last). Refused (409) while its namespace carries the ring label, which wins at every sync",
    )

    @field_validator("labels", "pins", "status", "acknowledge_drift", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null (leave the field out to keep it as it is)")
        return value

    @field_validator("acknowledge_drift")
    @classmethod
    def _only_true(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError("only true (acknowledging the drift clears it)")
        return value

    @model_validator(mode="after")
    def _something(self) -> CustomerPatch:
        if not self.model_fields_set:
            raise ValueError(
                "the patch changes nothing: give labels, maintenanceWindow, pins, status or acknowledgeDrift"
            )
        return self


class Pin(Model):
    version: str
    reason: str
    expires_at: Timestamp
    pinned_by: str | None
    pinned_at: Timestamp
    expired: bool = Field(description="the pin has expired: deploys no longer leave the customer out for it")


class DriftEntry(Model):
    recorded: str | None = Field(description="what the inventory had recorded")
    release: str | None = Field(description="what the release held when the sync read it")
    detected_at: str | None = None


class Customer(Model):
    customer_id: str
    namespace: str
    release_name: str
    status: CustomerStatus
    labels: dict[str, str]
    versions: dict[str, str] = Field(description="component -> version the release holds (as last read)")
    chart_version: str | None
    release_revision: int | None
    drift: dict[str, DriftEntry] | None = Field(description="where the release and the inventory disagreed")
    drift_detected_at: Timestamp | None
    pins: dict[str, Pin]
    maintenance_window: MaintenanceWindow | None
    release_error: str | None = Field(description="why the last sync could not read the release")
    discovered_at: Timestamp | None
    last_seen_at: Timestamp | None
    decommissioned_at: Timestamp | None
    updated_at: Timestamp
    updated_by: str | None
    ring: str = Field(description="its ring (none set, or one the order no longer holds: the default, the last ring)")
    ring_from_label: bool = Field(description="the ring comes from its namespace's ring label (set at each sync)")


class CustomerList(Model):
    count: int
    customers: list[Customer]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class CustomerOperation(Model):
    """One helm operation (or a skip) on this customer, in any upgrade."""

    id: int
    upgrade_id: str
    operation: str
    component: str
    from_version: str | None
    to_version: str
    status: str
    wave: int
    left_out: str | None
    revision_before: int | None
    revision_after: int | None
    error: str | None
    started_at: Timestamp | None
    completed_at: Timestamp | None
    created_at: Timestamp


class CustomerEvent(Model):
    id: int
    kind: str = Field(
        description="discovered, drift, decommissioned, reappeared, release_unreadable, ring (read from the "
        "namespace's ring label), updated"
    )
    detail: dict[str, Any]
    actor: str | None = Field(description="who (the API caller), or null for discovery")
    sync_id: str | None
    at: Timestamp


class CustomerDetail(Customer):
    operations: list[CustomerOperation] = Field(description="helm operations on it across upgrades, newest first")
    operations_total: int
    history: list[CustomerEvent] = Field(description="discovery events and changes through the API, newest first")
    history_total: int


class CustomerPatchResponse(Model):
    customer: Customer
    changes: dict[str, Any] = Field(description="field -> {before, after}; empty when nothing changed")
    changed_by: str | None
    changed_at: str | None


class VersionCount(Model):
    version: str
    customers: int


class ComponentSpread(Model):
    component: str
    versions: list[VersionCount] = Field(description="most customers first")
    unknown: int = Field(description="customers whose release does not say this component's version")


class SyncSummary(Model):
    # An inventory sync (an `inventory_syncs` row): the record its repository reads, and the API's answer.
    sync_id: str
    status: str
    trigger: str
    requested_by: str | None
    counts: dict[str, int]
    problems: list[dict[str, Any]]
    error: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None

    @property
    def id(self) -> int:
        """The row's id (the wire carries it as a string)."""
        return int(self.sync_id)


class FleetResponse(Model):
    customers: int = Field(description="customers that exist (active and suspended)")
    by_status: dict[str, int]
    drift: int = Field(description="customers marked with drift")
    pinned: int = Field(description="customers with at least one pin in force")
    components: list[ComponentSpread]
    rings: list[str] = Field(description="the rings, first to last (RING_ORDER); a customer without one is in the last")
    by_ring: dict[str, int] = Field(description="existing customers per ring, every ring listed (zeros included)")
    last_sync: SyncSummary | None


class SyncStarted(Model):
    message: str
    sync_id: str
    status: str
    already_running: bool = Field(description="a sync was already pending or running: this is that one")


# ------------------------------------------------------------------------------------------- plans
