"""Blue-green steps of a customer, under its lease: the new version onto the idle slot, the Service's
switch to it, the old slot's finalization, and a rollback's switch back (docs/blue-green.md).
"""

from __future__ import annotations

from upgrader.cluster.types import (
    ClusterGateway,
    ReleaseInfo,
)
from upgrader.infra.errors import ReleaseNotReady
from upgrader.rollout.leases import LeaseSession
from upgrader.rollout.orchestration.state import (
    State,
    row_spec,
    started,
)


def start_slot(lease: LeaseSession, release: ReleaseInfo, chart_version: str, *, blue_green: bool,
                cluster: ClusterGateway) -> State:  # fmt: skip
    """Blue-green, step 1: the new version onto the idle slot; the active slot keeps serving.

    A release that follows the blue-green contract is only ever upgraded this way (an in-place image
    change would set a value its chart does not read), and only when the deploy asked for it: a plain
    deploy is refused for it, as a blue-green deploy is for a release without slots."""
    row = lease.row
    component = row.component
    slots = release.slots.get(component)
    if slots is None:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' does not follow the blue-green contract: its values have no "
            f"{component}.slots (docs/blue-green.md); deploy without blueGreen"
        )
    if not blue_green:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' runs {component} in blue-green slots (active "
            f"{slots.active}): deploy with blueGreen so the new version goes onto the idle slot"
        )
    if slots.active not in ("blue", "green") or not slots.version:
        raise ReleaseNotReady(
            f"Helm release '{release.release}': {component}.activeSlot {slots.active!r} runs no version"
        )
    idle, version = slots.idle, str(row.to_version)
    note = (f"blue-green: {component} {version} onto the idle slot {idle}; {slots.active} keeps serving "
            f"{slots.version} until the switch")  # fmt: skip
    lease.record_plan(revision_before=release.revision, version_before=slots.version, chart_version=chart_version,
                      note=note)  # fmt: skip
    # the idle slot's tag pinned to the digest the image pre-flight resolved, as a rolling upgrade's tag is
    spec = row_spec(row, "slot", version=version, chart_version=chart_version, slot=idle, chart_name=release.chart_name,
                    digest=row.target_digest, release=release)  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name)
    return started(name, "slot", slot=idle, chartVersion=chart_version)


def switch(lease: LeaseSession, event: State, existing: dict[str, bool], *, cluster: ClusterGateway) -> State:
    """Blue-green, step 2 (under the lease the row still holds, after the idle slot proved healthy): the
    Service follows the idle slot. Not when the run was stopped meanwhile: the new version then stays
    on the idle slot, unused, and the active slot keeps serving."""
    row, slot_job = lease.row, event.get("slotJob") or {}
    slot, chart_version = slot_job.get("slot"), slot_job.get("chartVersion") or row.chart_version
    name = cluster.job_name(row_spec(row, "switch"))
    if name in existing:
        lease.record_job(name)
        return started(name, "switch", slot=slot)
    if lease.stop_reason:
        reason = (f"not switched: {lease.stop_reason}; {row.to_version} stays on the idle slot {slot}, the "
                  "active slot keeps serving")  # fmt: skip
        lease.skip(reason)
        return {"phase": "skipped", "stage": "switch", "reason": reason}
    release = cluster.release_status(row.namespace, row.release_name)
    found = release.slots.get(row.component)
    if slot is None and found is not None:
        slot = found.idle
    if release.stuck or found is None or found.version_in(str(slot)) != row.to_version:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' changed under the upgrade: slot {slot} no longer runs "
            f"{row.to_version} ({release.status}, revision {release.revision}); not switching"
        )
    spec = row_spec(row, "switch", slot=slot, chart_version=str(chart_version or release.chart_version),
                 chart_name=release.chart_name)  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name, note=f"blue-green: slot {slot} is healthy; switching {row.component} to it")
    return started(name, "switch", slot=slot)


def finalize(lease: LeaseSession, existing: dict[str, bool], *, cluster: ClusterGateway) -> State:
    """Blue-green, step 3 (finalizeOldSlot, after the switch): the old slot's tag emptied, its Deployment
    removed. The upgrade itself is done: a run stopped meanwhile, or an old slot already empty, keeps
    what is there and says so."""
    row = lease.row
    name = cluster.job_name(row_spec(row, "finalize"))
    if name in existing:
        lease.record_job(name)
        return started(name, "finalize")
    release = cluster.release_status(row.namespace, row.release_name)
    found = release.slots.get(row.component)
    old = found.idle if found else None
    if lease.stop_reason:
        kept = f"old slot {old} kept (not finalized): {lease.stop_reason}"
    elif found is None or old is None or not found.tags.get(old):
        kept = "nothing to finalize: the old slot holds no version"
    else:
        kept = None
    if kept is not None or found is None or old is None:
        return {"phase": "succeeded", "stage": "finalize", "jobName": None, "release": release.snapshot(),
                "output": kept}  # fmt: skip
    spec = row_spec(row, "finalize", slot=old, chart_version=row.chart_version or release.chart_version,
                 chart_name=release.chart_name)  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name, note=f"blue-green: finalizing, the old slot {old} ({found.tags[old]}) is removed")
    return started(name, "finalize", slot=old)


def switch_back(lease: LeaseSession, release: ReleaseInfo, *, cluster: ClusterGateway) -> State:
    """Blue-green rollback: the Service goes back to the other slot at once; it still runs the version
    to return to, so no image is pulled. Refused (skipped, with the reason) when that slot was
    finalized or holds another version: rolling forward again is a deploy."""
    row = lease.row
    component, target = row.component, row.to_version
    slots = release.slots[component]
    if slots.version_in(slots.idle) != target:  # the slot's value maybe pinned (`v1.1.0@sha256:…`): its version
        held = slots.tags.get(slots.idle) or "nothing (finalized)"
        reason = (f"not rolled back: blue-green slot {slots.idle} holds {held}, not {target}, so there is nothing "
                  f"to switch back to; deploy {target} to go back")  # fmt: skip
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    if not release.chart_version:
        raise ReleaseNotReady(f"Helm release '{release.release}' records no chart version; cannot pin the chart")
    note = (f"blue-green: switching {component} back to slot {slots.idle}, which still runs {target} "
            "(no image pulled)")  # fmt: skip
    lease.record_plan(revision_before=release.revision, version_before=slots.version,
                      chart_version=release.chart_version, note=note)  # fmt: skip
    name = cluster.start_helm_job(row_spec(row, "switch", slot=slots.idle, chart_version=release.chart_version,
                                        chart_name=release.chart_name))  # fmt: skip
    lease.record_job(name)
    return started(name, "switch", slot=slots.idle)
