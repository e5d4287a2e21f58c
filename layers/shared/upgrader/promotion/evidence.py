"""The evidence a version leaves on a ring: which upgrades carried it there, how many of the ring's targeted
customers it reached, the halts, and when the last of those upgrades finished. Pure records; the SQL that
reads them is `evidence_repository`.

A customer counts on the ring it was in when the deploy wrote its row (`customer_upgrade_logs.ring`), so
moving a customer to another ring later changes no evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from upgrader.infra.timestamps import iso


@dataclass(frozen=True)
class UpgradeTrace:
    """One upgrade that carried the version on the ring, counted over its customers of that ring.

    targeted: rows the upgrade meant to change (left-out rows, pinned or already at the version, are not);
    succeeded: of those, completed and not rolled back since; finished_at: None while it is active."""

    upgrade_id: int
    status: str
    targeted: int
    succeeded: int
    halt_reason: str | None
    finished_at: datetime | None
    active: bool

    @property
    def halted(self) -> bool:
        return self.status == "halted" or self.halt_reason is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "upgradeId": str(self.upgrade_id),
            "status": self.status,
            "targeted": self.targeted,
            "succeeded": self.succeeded,
            "haltReason": self.halt_reason,
            "finishedAt": iso(self.finished_at),
        }


@dataclass(frozen=True)
class RingEvidence:
    """This version of this component on ring `ring`, summed over the upgrades that carried it there."""

    component: str
    version: str
    ring: str
    upgrades: tuple[UpgradeTrace, ...] = ()

    @classmethod
    def of(cls, component: str, version: str, ring: str, upgrades: Iterable[UpgradeTrace]) -> RingEvidence:
        return cls(component, version, ring, tuple(sorted(upgrades, key=lambda u: u.upgrade_id)))

    @property
    def targeted(self) -> int:
        return sum(u.targeted for u in self.upgrades)

    @property
    def succeeded(self) -> int:
        return sum(u.succeeded for u in self.upgrades)

    @property
    def halts(self) -> tuple[UpgradeTrace, ...]:
        return tuple(u for u in self.upgrades if u.halted)

    @property
    def running(self) -> tuple[UpgradeTrace, ...]:
        return tuple(u for u in self.upgrades if u.active)

    @property
    def last_finished_at(self) -> datetime | None:
        """When the last of its upgrades finished; None when one is still active or none ran."""
        if not self.upgrades or self.running:
            return None
        finished = [u.finished_at for u in self.upgrades if u.finished_at is not None]
        return max(finished) if finished else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ring": self.ring,
            "targeted": self.targeted,
            "succeeded": self.succeeded,
            "halts": [str(u.upgrade_id) for u in self.halts],
            "lastFinishedAt": iso(self.last_finished_at),
            "upgrades": [u.as_dict() for u in self.upgrades],
        }
