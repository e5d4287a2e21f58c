"""Helm Jobs that restore a customer's release, under its lease: a rollback row's (exactly the upgrade's
component, see `upgrader.rollout.rollbacks`), an automatic rollback after a failed health check, and the recovery
of a release left pending-* by a helm that died.
"""

from __future__ import annotations

from typing import Any

from upgrader.cluster.types import (
    ClusterGateway,
    HelmOperation,
    ReleaseInfo,
)
from upgrader.infra.errors import ReleaseNotReady
from upgrader.rollout.leases import LeaseSession
from upgrader.rollout.orchestration.bluegreen_steps import switch_back
from upgrader.rollout.orchestration.state import (
    State,
    row_spec,
    started,
)


def recover(lease: LeaseSession, release: ReleaseInfo, existing: dict[str, bool], *,
             cluster: ClusterGateway) -> State:  # fmt: skip
    """A release left in pending-* by a helm that died: roll it back first, unless a Job still works on it."""
    busy = [job for job in cluster.active_jobs_for_release(release.namespace, release.release) if job not in existing]
    if busy:
        # Not ours to touch: the customer waits (a Job of a run the reconciler has not finished yet).
        why = f"release {release.status}: helm Job(s) {', '.join(busy)} still working on it"
        lease.give_back()
        lease.wait(why)
        return {"phase": "waiting", "stage": "upgrade", "waitingFor": why}
    if release.last_deployed_revision is None:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' is {release.status} and has no deployed revision to recover to"
        )
    spec = row_spec(lease.row, "recover", revision=release.last_deployed_revision)
    name = cluster.start_helm_job(spec)
    lease.record_job(
        name,
        note=f"release was stuck in {release.status} (revision {release.revision}); recovering: "
        f"helm rollback to revision {release.last_deployed_revision} (Job {name})",
    )
    return started(name, "recover", revision=release.last_deployed_revision)


def start_rollback(lease: LeaseSession, existing: dict[str, bool], *, cluster: ClusterGateway) -> State:
    """Restore the upgrade's component on this customer, and nothing else (see `upgrader.rollout.rollbacks`)."""
    row = lease.row
    for operation in ("rollback", "restore", "switch"):
        name = cluster.job_name(row_spec(row, operation))  # type: ignore[arg-type]
        if name in existing:
            lease.record_job(name)
            return started(name, operation)
    if lease.stop_reason:
        reason = f"not started: {lease.stop_reason}"
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    upgraded = lease.upgraded_row()
    release = cluster.release_status(row.namespace, row.release_name)
    if not release.exists:
        raise ReleaseNotReady(f"Helm release '{row.release_name}' not found in namespace '{row.namespace}'")
    if release.stuck:
        busy = cluster.active_jobs_for_release(release.namespace, release.release)
        if busy:
            why = f"release {release.status}: helm Job(s) {', '.join(busy)} still working on it"
            lease.give_back()
            lease.wait(why)
            return {"phase": "waiting", "stage": "rollback", "waitingFor": why}
        raise ReleaseNotReady(
            f"Helm release '{release.release}' is {release.status} (revision {release.revision}); "
            "an upgrade's pre-check recovers such a release, a rollback does not guess"
        )
    if row.components:
        return _start_train_rollback(lease, release, cluster=cluster)
    component, target = row.component, row.to_version
    current = release.versions.get(component)
    left_by_upgrade = (upgraded.version_after if upgraded else None) or row.from_version
    settled = release.status == "deployed"  # a failed newest revision (e.g. a failed rollback): try again
    if current == target and settled:
        reason = f"nothing to roll back: the release already runs {component} {target}"
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    if current != left_by_upgrade:
        reason = (
            f"not rolled back: the release runs {component} {current}, not {left_by_upgrade} as upgrade "
            f"{row.upgrade_id} left it; it was changed since, and that change is not reverted"
        )
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    if component in release.slots:
        return switch_back(lease, release, cluster=cluster)
    return _restore_job(lease, release, {component: target}, {component: current}, cluster=cluster)


def _start_train_rollback(lease: LeaseSession, release: ReleaseInfo, *, cluster: ClusterGateway) -> State:
    """A release train's rollback row: every component of the train back to what the release held before the
    train, and only them, in one helm operation; refused (skipped, with the reason) when any of them was changed
    since the train left it, so no later change is reverted behind its back."""
    row = lease.row
    train: dict[str, Any] = row.components or {}
    current = {c: release.versions.get(c) for c in train}
    settled = release.status == "deployed"
    if settled and all(current[c] == v["to"] for c, v in train.items()):
        words = ", ".join(f"{c} {v['to']}" for c, v in train.items())
        reason = f"nothing to roll back: the release already runs {words}"
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    moved = [f"{c} {current[c]}, not {v['from']}" for c, v in train.items() if current[c] != v["from"]]
    if moved:
        reason = (f"not rolled back: the release runs {'; '.join(moved)} as upgrade {row.upgrade_id} left it; "
                  "it was changed since, and that change is not reverted")  # fmt: skip
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    return _restore_job(lease, release, {c: str(v["to"]) for c, v in train.items()}, current, cluster=cluster)


def _restore_job(lease: LeaseSession, release: ReleaseInfo, back: dict[str, str], current: dict[str, str | None], *,
                 cluster: ClusterGateway) -> State:  # fmt: skip
    """The rollback row's helm Job, once nothing was changed since: `helm rollback` to the revision before while the
    release is still at the revision the upgrade produced (exact), else one `helm upgrade` setting only `back` (the
    row's component, or every component of a train) to its version, the chart kept."""
    row = lease.row
    upgraded = lease.upgraded_row()
    revision_after = upgraded.revision_after if upgraded else None
    revision_before = upgraded.revision_before if upgraded else None
    if revision_after and revision_before and release.revision == revision_after:
        spec = row_spec(row, "rollback", revision=int(revision_before))
        note = (f"release still at revision {release.revision}, as upgrade {row.upgrade_id} left it: "
                f"helm rollback to revision {revision_before}")  # fmt: skip
    else:
        if not release.chart_version:
            raise ReleaseNotReady(f"Helm release '{release.release}' records no chart version; cannot pin the chart")
        # each component at the upgrade's rollback digest, when it restores the version that digest was resolved for
        also = tuple((c, v, row.digest_of(c)) for c, v in back.items() if c != row.component)
        spec = row_spec(row, "restore", version=back[row.component], chart_version=release.chart_version, also=also,
                        digest=row.target_digest, release=release)  # fmt: skip
        words = ", ".join(f"{c} back to {v}" for c, v in back.items())
        note = (f"release changed since upgrade {row.upgrade_id} (now revision {release.revision}): helm upgrade "
                f"--reset-then-reuse-values setting only {words}, chart {release.chart_version} kept")  # fmt: skip
    train = row.components is not None
    lease.record_plan(revision_before=release.revision, version_before=current.get(row.component),
                      chart_version=release.chart_version, note=note,
                      components_before=current if train else None)  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name)
    return started(name, spec.operation, revision=spec.revision)


def restore(lease: LeaseSession, stage: str, existing: dict[str, bool], *, cluster: ClusterGateway) -> State:
    """Under the lease this row already holds: roll back its own upgrade after a failed health check
    (autorollback: exact, the release is still at the revision it produced), or recover a release its
    killed Job left pending-* (recover_after). An abort does not stop these: they restore."""
    row = lease.row
    operation: HelmOperation = "rollback" if row.operation == "upgrade" else "recover"
    name = cluster.job_name(row_spec(row, operation))
    if name in existing:
        lease.record_job(name)
        return started(name, operation)
    if stage == "autorollback":
        if not row.revision_before:
            raise ReleaseNotReady("the revision before the upgrade was not recorded; cannot roll back exactly")
        revision = int(row.revision_before)
    else:
        release = cluster.release_status(row.namespace, row.release_name)
        if not release.stuck:  # someone (or helm itself) finished it meanwhile
            return {"phase": "succeeded", "stage": operation, "jobName": None, "release": release.snapshot(),
                    "output": f"release {release.status} at revision {release.revision}; nothing to recover"}  # fmt: skip
        if release.last_deployed_revision is None:
            raise ReleaseNotReady(f"Helm release '{release.release}' is {release.status} with nothing to recover to")
        revision = release.last_deployed_revision
    spec = row_spec(row, operation, revision=revision)
    name = cluster.start_helm_job(spec)
    lease.record_job(name)
    return started(name, operation, revision=revision)
