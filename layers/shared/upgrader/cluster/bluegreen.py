"""Blue-green per customer: the chart contract and the helm steps of an upgrade and its rollback.

The contract (docs/blue-green.md, sample chart charts/customer-stack-bluegreen): per component two
slots, `<component>.slots.blue.tag` and `<component>.slots.green.tag` (a slot without a tag is not
deployed), and `<component>.activeSlot` (blue | green), the value the component's Service follows. The
component's version is the active slot's tag.

An upgrade puts the new version on the idle slot (the active one keeps serving), waits until that slot's
Deployment is healthy, then switches `activeSlot`: one value, no image pulled at the switch. A rollback
switches back at once (the old slot still runs). The old slot stays until the next upgrade (which deploys
onto it) or an explicit finalize (its tag emptied). Every step is `helm upgrade --reuse-values --set ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from upgrader.infra.components import tag_version

SLOTS = ("blue", "green")
SLOT_LABEL = "upgrades.example.com/slot"


def slot_tag_key(component: str, slot: str) -> str:
    """Where a slot's tag is: `api.slots.green.tag` (its digest, when the chart declares one: `api.slots.green.digest`)."""
    return f"{component}.slots.{slot}.tag"


class BlueGreenError(ValueError):
    """The release's values do not follow the contract, or the step is impossible (e.g. no old slot)."""


@dataclass(frozen=True)
class Slots:
    active: str
    tags: dict[str, str]  # slot -> its tag value as the release holds it ("" when the slot is not deployed)

    @property
    def idle(self) -> str:
        return SLOTS[1 - SLOTS.index(self.active)]

    def version_in(self, slot: str) -> str | None:
        """The version a slot runs (None when it is not deployed): a tag value a deploy pinned to its digest
        (`v1.2.0@sha256:…`, docs/images.md) is that version."""
        return tag_version(self.tags.get(slot) or "") or None

    @property
    def version(self) -> str | None:
        """The component's version: the active slot's."""
        return self.version_in(self.active)


def component_slots(mine: Any) -> Slots | None:
    """The slots in one component's (coalesced) values; None when it has none (not a blue-green chart).
    The active slot is taken as written (`slots_of` checks it)."""
    if not isinstance(mine, Mapping) or not isinstance(mine.get("slots"), Mapping):
        return None
    tags = {slot: _tag((mine["slots"].get(slot) or {}).get("tag")) for slot in SLOTS}
    return Slots(str(mine.get("activeSlot") or SLOTS[0]), tags)


def _tag(value: Any) -> str:
    return "" if value is None or isinstance(value, Mapping | list) else str(value)


def slots_of(values: Mapping[str, Any], component: str) -> Slots:
    """The component's slots in a release's (coalesced) values."""
    found = component_slots(values.get(component))
    if found is None:
        raise BlueGreenError(f"{component}: the release's values have no {component}.slots (not a blue-green chart)")
    if found.active not in SLOTS:
        raise BlueGreenError(f"{component}.activeSlot must be blue or green, not {found.active!r}")
    return found


@dataclass(frozen=True)
class BlueGreenPlan:
    """The helm --set values of each step of one component's blue-green upgrade."""

    component: str
    version: str
    active: str
    idle: str
    deploy: list[str]  # put the version on the idle slot (empty: it already runs it)
    switch: list[str]  # make the idle slot active
    rollback: list[str]  # switch back to the slot that was active

    @property
    def deployment(self) -> str:
        """The workload to wait for before switching: `<release>-<component>-<idle>`."""
        return f"{self.component}-{self.idle}"


def plan_upgrade(values: Mapping[str, Any], component: str, version: str) -> BlueGreenPlan:
    """The steps that move `component` to `version` by way of its idle slot."""
    slots = slots_of(values, component)
    if slots.version == version:
        raise BlueGreenError(f"{component} already runs {version} on its active slot {slots.active}")
    idle = slots.idle
    deploy = [] if slots.version_in(idle) == version else [f"{component}.slots.{idle}.tag={version}"]
    return BlueGreenPlan(component, version, slots.active, idle, deploy, [f"{component}.activeSlot={idle}"],
                         [f"{component}.activeSlot={slots.active}"])  # fmt: skip


def plan_rollback(values: Mapping[str, Any], component: str) -> list[str]:
    """Switch back to the other slot at once; refused when it holds nothing to go back to."""
    slots = slots_of(values, component)
    if not slots.tags[slots.idle]:
        raise BlueGreenError(f"{component}: the {slots.idle} slot holds no version to switch back to (finalized)")
    return [f"{component}.activeSlot={slots.idle}"]


def plan_finalize(values: Mapping[str, Any], component: str) -> list[str]:
    """Remove the old (idle) slot's Deployment: its tag emptied."""
    slots = slots_of(values, component)
    return [f"{component}.slots.{slots.idle}.tag="]
