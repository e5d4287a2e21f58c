"""A customer's steps (one child per customer): begin_customer -> start_helm_job (takes the release's
lease; waits its turn while another operation holds it) -> check_helm_job (loop) -> check_rollout (loop)
-> [automatic rollback] -> finish_customer. Blue-green: start_helm_job "slot" -> check_helm_job ->
check_rollout of the idle slot -> start_helm_job "switch" -> check_helm_job -> finish_customer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from upgrader.cluster.types import (
    ClusterGateway,
    ClusterTransientError,
)
from upgrader.infra.errors import ReleaseNotReady
from upgrader.rollout.halts import WindowRelease
from upgrader.rollout.leases import LeaseRepository, LeaseSession, describe_holder
from upgrader.rollout.orchestration.bluegreen_steps import finalize, start_slot, switch
from upgrader.rollout.orchestration.rollback_steps import recover, restore, start_rollback
from upgrader.rollout.orchestration.state import (
    State,
    epoch_stamp,
    failure_text,
    outage_since,
    row_spec,
    started,
)
from upgrader.rollout.run_repository import RunRepository
from upgrader.rollout.windows import (
    Clock,
    SystemClock,
    WindowRepository,
    check_window,
    decide,
    policy,
    stamp,
)


def begin_customer(
    event: State, *, runs: RunRepository, windows: WindowRepository | None = None, now: datetime | None = None
) -> State:
    """Claim the customer's row; 'done' when it is already final or its run was stopped.

    With maintenance windows respected (the run says so), first: 'done' with status 'pending' when its
    window has closed since its slice was prepared (the Map may have queued it; back to waiting for its
    next opening, a later slice starts it), or 'done' with status 'skipped' when the window does not
    open before the deadline; see `upgrader.rollout.windows`."""
    if event.get("respectWindows") and windows is not None:
        deferred = check_window(event, windows=windows, now=now or datetime.now(UTC))
        if deferred is not None:
            return deferred
    action, row, parameters = runs.claim_customer(int(event["logId"]), int(event["upgradeId"]))
    upgrading = row.operation == "upgrade"
    return {
        "action": action,
        "status": row.status,
        "customerId": row.customer_id,
        "namespace": row.namespace,
        "release": row.release_name,
        "component": row.component,
        "version": row.to_version,
        # a release train's components (its health check judges each of them); one component: just it
        "components": list(row.components or {}) or [row.component],
        "operation": row.operation,
        "attempt": row.attempt,
        "autoRollback": bool(parameters.get("autoRollback")) and upgrading,
        "healthCheck": (parameters.get("healthCheck") if upgrading else None) or {"enabled": False},
        "blueGreen": bool(parameters.get("blueGreen")) and upgrading,
        "finalizeOldSlot": bool(parameters.get("blueGreen") and parameters.get("finalizeOldSlot")) and upgrading,
    }


def start_helm_job(event: State, *, leases: LeaseRepository, cluster: ClusterGateway,
                   learn_first_wait: bool = True, clock: Clock | None = None) -> State:  # fmt: skip
    """Take the release's lease and create the customer's helm Job (or adopt the one a retry finds).

    Under the lease, in one transaction: the run's stop flag, the wave's failure budget and the
    customer's maintenance window are checked, the release is read (what it holds before helm is
    recorded), and the Job is created before the commit (see `upgrader.rollout.leases` for why an abort is then
    airtight). While another operation holds the release, the customer waits its turn ("waiting"); it
    never fails for that. A customer whose window closed meanwhile (while it waited for the lease, for
    the Kubernetes API, or in the Map's queue) goes back to waiting for its next opening ("deferred":
    `pending` again, no lease, its child ends; a later slice of its wave starts it), or is skipped when
    that opening is past the deadline. `clock` says "now" for that decision (tests drive one).

    A started Job carries `firstWaitSeconds`, how long the state machine waits before its first look:
    the component's typical helm duration (`first_wait_seconds`), then it polls at `pollSeconds`.
    """
    stage = str(event.get("stage") or "start")
    try:
        with leases.session(int(event["logId"])) as lease:
            if lease.state == "final":
                return {"phase": "done", "stage": stage}
            if lease.state == "busy":
                closed = window_closed(lease, clock) if stage == "start" else None
                if closed is not None:  # it would wait for the lease, then for its window: wait for the window
                    return closed
                why = describe_holder(lease.holder)
                lease.wait(why)
                return {"phase": "waiting", "stage": stage, "waitingFor": why}
            existing = cluster.helm_jobs_of(lease.log_id)
            if stage in ("autorollback", "recover_after"):
                started = restore(lease, stage, existing, cluster=cluster)
            elif stage == "switch":
                started = switch(lease, event, existing, cluster=cluster)
            elif stage == "finalize":
                started = finalize(lease, existing, cluster=cluster)
            elif lease.row.operation == "upgrade":
                started = _start_upgrade(lease, existing, cluster=cluster, clock=clock)
            else:
                started = start_rollback(lease, existing, cluster=cluster)
            if started.get("phase") == "pending":
                typical = lease.row.typical_helm_seconds if learn_first_wait else None
                started["firstWaitSeconds"] = first_wait_seconds(typical, int(event.get("pollSeconds", 15)))
            return started
    except ClusterTransientError as exc:
        # The lease transaction rolled back (nothing taken, nothing recorded). A Job whose create
        # reached the cluster anyway is adopted next time. The customer waits for the API to come back.
        since = outage_since(event.get("job"), exc)
        why = f"Kubernetes API unreachable since {epoch_stamp(since)}: {exc}"
        leases.note_waiting(int(event["logId"]), why)
        return {"phase": "waiting", "stage": stage, "waitingFor": why, "unreachableSince": since}


# The longest first wait: a Job that typically runs longer is still looked at within the hour.
MAX_FIRST_WAIT_SECONDS = 3600
# The first look comes this long after the typical duration (at most a poll interval): a Job's recorded duration
# has a second's resolution and starts at its status.startTime, a moment after StartHelmJob created it. A look
# before the Job ends costs a whole pollSeconds more (15 s by default) and one more look; a look this much late
# costs these seconds. With polls of 0 or 1 s (tests, the local stack) an early look costs as little.
FIRST_LOOK_MARGIN_SECONDS = 2


def first_wait_seconds(typical_helm_seconds: float | None, poll_seconds: int) -> int:
    """How long to wait before the first look at a Job just started: the component's typical helm duration
    (whole seconds, as recorded) plus min(pollSeconds, FIRST_LOOK_MARGIN_SECONDS), so that the typical Job is
    done at that look (`make bench`, helm durations: with 60 s Jobs and 15 s polls, looking at the typical
    duration itself found most Jobs still running), or the configured interval while nothing is recorded yet."""
    if typical_helm_seconds is None:
        return poll_seconds
    margin = min(max(0, poll_seconds), FIRST_LOOK_MARGIN_SECONDS)
    return min(MAX_FIRST_WAIT_SECONDS, max(0, int(typical_helm_seconds)) + margin)


def stopped(lease: LeaseSession, *, recovered: bool) -> str | None:
    """Why this customer must not start helm: its run was stopped (abort, halt) or its wave is over budget."""
    reason = lease.stop_reason or lease.budget_exceeded()
    if reason is None:
        return None
    return f"release recovered; not upgraded: {reason}" if recovered else f"not started: {reason}"


def window_closed(lease: LeaseSession, clock: Clock | None) -> State | None:
    """The window decision made again under the lease, right before helm (upgrade rows of a run that
    respects windows): None to go on; else the customer is deferred to its next opening, or skipped.

    A row still `pending` here was deferred by an earlier delivery of this step: it stays deferred."""
    row = lease.row
    parameters = row.parameters
    if row.operation != "upgrade" or not parameters.get("respectWindows"):
        return None
    if row.status == "pending" and row.window_opens_at is not None:
        opens = row.window_opens_at.replace(tzinfo=UTC)  # a timestamp column: UTC
        lease.defer(opens)
        return {"phase": "deferred", "stage": "upgrade", "waitUntil": stamp(opens)}
    expected, deadline = policy(parameters)
    decision = decide(row.maintenance_window, (clock or SystemClock()).now(), expected=expected,
                      deadline=deadline)  # fmt: skip
    if decision.action == "skip":
        reason = f"not started: {decision.reason}"
        lease.skip(reason)
        return {"phase": "skipped", "stage": "upgrade", "reason": reason}
    if decision.action == "wait" and decision.at is not None:
        lease.defer(decision.at)
        return {"phase": "deferred", "stage": "upgrade", "waitUntil": stamp(decision.at)}
    return None


def _start_upgrade(lease: LeaseSession, existing: dict[str, bool], *, cluster: ClusterGateway,
                   clock: Clock | None = None) -> State:  # fmt: skip
    row = lease.row
    upgrade_name = cluster.job_name(row_spec(row, "upgrade"))
    if upgrade_name in existing:  # an earlier attempt created it: adopt
        lease.record_job(upgrade_name)
        return started(upgrade_name, "upgrade")
    slot_name = cluster.job_name(row_spec(row, "slot"))
    if slot_name in existing:  # blue-green: the slot step never moves activeSlot, so its slot is the idle one
        release = cluster.release_status(row.namespace, row.release_name)
        found = release.slots.get(row.component)
        lease.record_job(slot_name)
        return started(slot_name, "slot", slot=found.idle if found else None,
                        chartVersion=row.chart_version or release.chart_version)  # fmt: skip
    recover_name = cluster.job_name(row_spec(row, "recover"))
    if recover_name in existing and not existing[recover_name]:
        lease.record_job(recover_name)
        return started(recover_name, "recover")
    reason = stopped(lease, recovered=recover_name in existing)
    if reason:
        lease.skip(reason)
        return {"phase": "skipped", "stage": "upgrade", "reason": reason}
    closed = window_closed(lease, clock)
    if closed is not None:
        return closed
    release = cluster.release_status(row.namespace, row.release_name)
    if not release.exists:
        raise ReleaseNotReady(f"Helm release '{row.release_name}' not found in namespace '{row.namespace}'")
    if release.stuck:
        if recover_name in existing:
            raise ReleaseNotReady(
                f"Helm release '{release.release}' is still {release.status} (revision {release.revision}) after "
                f"the recovery Job {recover_name}; not touching it"
            )
        return recover(lease, release, existing, cluster=cluster)
    chart_version = row.chart_version or release.chart_version
    if not chart_version:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' records no chart version, so the chart cannot be pinned; "
            "deploy with an explicit chartVersion"
        )
    blue_green = bool(row.parameters.get("blueGreen"))
    sloted = [c for c in (row.components or {}) if c in release.slots]
    if sloted:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' runs {', '.join(sloted)} blue-green (slots): a release train does "
            "not switch slots; deploy that component alone"
        )
    if blue_green or row.component in release.slots:
        return start_slot(lease, release, chart_version, blue_green=blue_green, cluster=cluster)
    spec = row_spec(row, "upgrade", version=row.to_version, chart_version=chart_version, also=row.train_tags(),
                    digest=row.target_digest, release=release)  # fmt: skip
    lease.record_plan(revision_before=release.revision, version_before=release.versions.get(row.component),
                      chart_version=chart_version,
                      components_before={c: release.versions.get(c) for c in row.components or {}})  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name)
    return started(name, "upgrade")


def finish_customer(event: State, *, runs: RunRepository, release_windows: WindowRelease | None = None) -> State:
    """Record the customer's outcome, counter, what its release holds now, and free its lease (once).

    A failure that puts its wave over the failure budget halts the upgrade in the same transaction; a
    run of it waiting for its customers' maintenance windows then goes on at once through
    `release_windows` (it finds the halt and ends; its waiting customers are skipped with the reason)."""
    failure = event.get("failure")
    job = event.get("job") or {}
    health = event.get("health") or {}
    customer = event.get("customer") or {}
    upgrade_job = event.get("upgradeJob")
    failed_job = event.get("failedJob")
    slot_job = event.get("slotJob")  # blue-green: the slot step before this switch
    switch_job = event.get("switchJob")  # blue-green with finalizeOldSlot: the switch before this finalize
    # Helm's own output is already on the row (check_helm_job wrote it); what a step says without a Job
    # (nothing to finalize, nothing to recover) is the product's own text, recorded here.
    output = "\n".join(filter(None, [(j or {}).get("output") for j in (slot_job, switch_job, job)])) or None
    release = job.get("release")
    if failure:
        status = "skipped" if failure.get("Error") == "UpgradeHalted" else "failed"
        error = failure_text(failure)
    elif failed_job is not None:  # the Job was killed mid-operation; a recovery ran before this record
        recovered = job.get("phase") == "succeeded"
        after = f"release recovered to revision {(release or {}).get('revision')}" if recovered else (
            f"recovery failed: {job.get('error')}")  # fmt: skip
        status, error = "failed", f"{failed_job.get('error')}; {after}"
    elif upgrade_job is not None:  # an automatic rollback ran after a failed health check
        reason = health.get("detail") or upgrade_job.get("error") or "upgrade failed"
        if job.get("phase") == "succeeded":
            revision = job.get("revision")
            status, error = "rolled_back", f"{reason}; rolled back to revision {revision}"
        else:
            status, error = "failed", f"{reason}; automatic rollback failed: {job.get('error')}"
    elif job.get("phase") == "succeeded" and health.get("phase") == "unhealthy":
        status, error = "failed", health.get("detail")
    elif job.get("phase") == "succeeded":
        status, error = "completed", None
    elif job.get("stage") == "slot":  # blue-green: the idle slot's helm step failed (helm --wait --atomic)
        status = "failed"
        error = (f"{job.get('error') or 'helm Job failed'}; nothing switched: helm --atomic undid the idle slot "
                 "step, the active slot kept serving")  # fmt: skip
    elif customer.get("autoRollback") and job.get("stage") == "upgrade":
        # helm --atomic already restored the previous revision: that is the rollback
        status, error = "rolled_back", f"{job.get('error')}; helm --atomic restored the previous revision"
    else:
        status, error = "failed", job.get("error") or "helm Job failed"
    # How long helm ran, learned by the next customers' first wait: only a plain success (not a recovery,
    # not an automatic rollback) says how long this operation of the component takes.
    plain = status == "completed" and upgrade_job is None and failed_job is None and slot_job is None
    helm_seconds = job.get("helmSeconds") if plain else None
    changed, row = runs.finish_customer(int(event["logId"]), status, output, error, release, helm_seconds=helm_seconds,
                                        release_windows=release_windows, upgrade_id=int(event["upgradeId"]))  # fmt: skip
    return {"logId": row.id, "status": row.status, "recorded": changed}
