"""Typed records of a run's rows as the workers read them (mapped once, by column name, in the repositories).

A record's fields are its columns' names (or the name a SELECT gives with AS); the state machine's steps, the
lease session and the reconciler read attributes, never a row's dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from upgrader.infra.timestamps import iso

# A release train's other components' images in its row's `components` (the first component's are the row's
# image_repository, target_digest, rollback_digest columns); in this order, as ImageCheck.digests answers them.
TRAIN_DIGESTS = ("imageRepository", "targetDigest", "rollbackDigest")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A `customer_upgrade_logs` row: what a customer's steps and the reconciler read of it."""

    id: int
    upgrade_id: int
    run_name: str
    wave: int
    attempt: int
    customer_id: str
    component: str
    operation: str
    status: str
    namespace: str  # run_name, namespace, release_name: nullable columns every row is recorded with
    release_name: str
    from_version: str | None
    to_version: str
    chart_version: str | None
    job_name: str | None
    revision_before: int | None
    rollback_of: int | None
    window_opens_at: datetime | None
    # a release train's row: component -> {from, to, before, after} (migration 090); None: one component
    components: dict[str, Any] | None
    target_digest: str | None  # the pre-flight's digest of to_version: helm sets `<tag>@<digest>` (docs/images.md)

    def digest_of(self, component: str) -> str | None:
        """The digest the row's helm pins for `component`'s version "to": its own component's `target_digest`, a
        train's other component's `targetDigest` (an upgrade: the pre-flight's; a rollback: the upgrade's
        `rollbackDigest` when it restores the version that digest was resolved for)."""
        if component == self.component:
            return self.target_digest
        return ((self.components or {}).get(component) or {}).get("targetDigest")

    def train_tags(self) -> tuple[tuple[str, str, str | None], ...]:
        """The train's other components, the version the row sets and its digest, for HelmJobSpec.also."""
        return tuple((c, str(v["to"]), self.digest_of(c)) for c, v in (self.components or {}).items()
                     if c != self.component)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClaimedLog(LogRecord):
    """A log row as BeginCustomer claims it, with its upgrade's parameters."""

    upgrade_parameters: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """The lease another operation holds on the customer's release (`customer_leases`)."""

    log_id: int
    upgrade_id: int
    run_name: str
    operation: str
    component: str
    acquired_at: datetime


@dataclass(frozen=True, slots=True)
class UpgradedLog:
    """What a rollback row's upgrade row recorded from the release."""

    version_before: str | None
    version_after: str | None
    revision_before: int | None
    revision_after: int | None


@dataclass(frozen=True, slots=True)
class LeaseRead(LogRecord):
    """What the lease transaction reads in one statement (see `upgrader.rollout.leases`): the log row, its
    upgrade's parameters, the run's stop reason, its wave's size and failures, the customer's window, the
    current holder (`holder_*`), a rollback row's upgrade row (`upgraded_*`), the component's typical helm
    duration, and whether the lease was taken now."""

    upgrade_parameters: dict[str, Any] | None
    strategy: str
    total_waves: int
    upgrade_chart_version: str | None
    stop_reason: str | None
    maintenance_window: dict[str, Any] | None
    wave_size: int
    wave_failed: int
    holder_log_id: int | None
    holder_upgrade_id: int | None
    holder_run_name: str | None
    holder_operation: str | None
    holder_component: str | None
    holder_acquired_at: datetime | None
    upgraded_version_before: str | None
    upgraded_version_after: str | None
    upgraded_revision_before: int | None
    upgraded_revision_after: int | None
    typical_helm_seconds: float | None
    lease_taken: bool

    @property
    def parameters(self) -> dict[str, Any]:
        return self.upgrade_parameters or {}

    @property
    def holder(self) -> LeaseHolder | None:
        """The lease's holder when one holds it (possibly this very row)."""
        if self.holder_log_id is None or self.holder_acquired_at is None:
            return None  # the join's columns are all set when a lease row was found
        return LeaseHolder(self.holder_log_id, int(self.holder_upgrade_id or 0), str(self.holder_run_name),
                           str(self.holder_operation), str(self.holder_component), self.holder_acquired_at)  # fmt: skip

    @property
    def upgraded(self) -> UpgradedLog | None:
        """A rollback row's upgrade row (None for an upgrade row)."""
        if self.rollback_of is None:
            return None
        return UpgradedLog(self.upgraded_version_before, self.upgraded_version_after, self.upgraded_revision_before,
                           self.upgraded_revision_after)  # fmt: skip


@dataclass(frozen=True, slots=True)
class WaveMember:
    """A run's customer in a wave: its log row's id, the customer and the wave number."""

    id: int
    customer_id: str
    wave: int


@dataclass(frozen=True, slots=True)
class SliceRow:
    """A row of a wave as its next slice is planned (`upgrader.rollout.windows.plan_slice`)."""

    id: int
    customer_id: str
    status: str
    window_opens_at: datetime | None
    maintenance_window: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class WaitingRow:
    """A pending upgrade row checked against its window before it is claimed (`check_window`)."""

    id: int
    customer_id: str
    window_opens_at: datetime | None
    maintenance_window: dict[str, Any] | None
    parameters: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """An `upgrade_runs` row: one execution of an upgrade or of a rollback."""

    run_name: str
    execution_name: str
    upgrade_id: int
    kind: str
    scope: str
    status: str
    stop_reason: str | None
    end_reason: str | None
    attempt: int
    requested_by: str | None
    created_at: datetime
    ended_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class WindowWaitRecord:
    """A customer of an upgrade waiting for its maintenance window, and when that window opens next."""

    customer_id: str
    window_opens_at: datetime

    @property
    def next_opening(self) -> str:
        return iso(self.window_opens_at)
