"""Typed records of an upgrade's rows, as the repositories hand them out (mapped once, by column name).

A record's fields are its columns' names; where the API names a fact otherwise, a property gives the
API's name, so that a response is validated from the record's attributes (`from_record`) with no
field-by-field copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from upgrader.infra.db import Row, columns, select_one
from upgrader.infra.errors import UpgradeNotFound


@dataclass(frozen=True, slots=True)
class UpgradeRecord:
    """One `system_upgrades` row."""

    id: int
    component: str
    from_version: str | None
    to_version: str
    strategy: str
    total_customers: int
    completed_customers: int
    failed_customers: int
    status: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    execution_name: str | None
    requested_by: str | None
    parameters: dict[str, Any]
    total_waves: int
    current_wave: int | None
    continued_at: datetime | None
    continued_by: str | None
    halt_reason: str | None
    chart_version: str | None
    gate: str | None
    gate_until: datetime | None

    # ------------------------------------------------------------------ the API's names of the facts
    @property
    def upgrade_id(self) -> str:
        return str(self.id)

    @property
    def version(self) -> str:
        return self.to_version

    @property
    def components(self) -> dict[str, str] | None:
        """A release train: every component it sets -> its version (None: one component)."""
        train = self.parameters.get("components")
        return dict(train) if train else None

    @property
    def total(self) -> int:
        return self.total_customers

    @property
    def completed(self) -> int:
        return self.completed_customers

    @property
    def failed(self) -> int:
        return self.failed_customers

    @property
    def job_id(self) -> str | None:
        return self.execution_name

    @property
    def blue_green(self) -> bool:
        return bool(self.parameters.get("blueGreen"))


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One execution of an upgrade (an `upgrade_runs` row of kind upgrade), under the API's names."""

    job_id: str
    attempt: int
    status: str
    stop_reason: str | None
    end_reason: str | None
    requested_by: str | None
    started_at: datetime | None
    ended_at: datetime | None


U = TypeVar("U", bound=UpgradeRecord)


def lock_upgrade(cur: psycopg.Cursor[Row], upgrade_id: int, record: type[U]) -> U:
    """The upgrade's row as `record`, locked FOR NO KEY UPDATE until the transaction ends (the first lock of the
    order every writer takes: see `upgrader.rollout.leases`); UpgradeNotFound when there is none."""
    found = select_one(
        cur, record, f"SELECT {columns(record)} FROM system_upgrades WHERE id = %s FOR NO KEY UPDATE", (upgrade_id,)
    )
    if found is None:
        raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
    return found
