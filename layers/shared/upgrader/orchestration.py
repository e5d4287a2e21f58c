"""The state machine's steps as domain functions. Each is idempotent: delivered twice, it acts once.

Parent (one execution per run):  prepare_run -> for each wave: [prepare_wave (a slice: the customers
                                 that may start now) -> wave map | window wait -> evaluate_wave]
                                 (again while customers of the wave wait for their maintenance window)
                                 -> gate? -> finalize_run
                                 (gate: the canary's approval, or a bake an abort can end at once)
Child (one per customer):        begin_customer -> start_helm_job (takes the release's lease; waits its
                                 turn while another operation holds it) -> check_helm_job (loop)
                                 -> check_rollout (loop) -> [automatic rollback] -> finish_customer
Blue-green (per customer):       start_helm_job "slot" (the version onto the idle slot) -> check_helm_job
                                 -> check_rollout of the idle slot -> start_helm_job "switch" (the Service
                                 follows the idle slot) -> check_helm_job -> finish_customer
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Protocol

from upgrader.cluster.types import (
    ClusterGateway,
    ClusterTransientError,
    HelmJobSpec,
    HelmOperation,
    HttpHealth,
    JobState,
    ReleaseInfo,
    RolloutState,
)
from upgrader.errors import GateClosed, ReleaseNotReady
from upgrader.helm_output import HelmOutputStore, header_for
from upgrader.leases import LeaseRepository, LeaseSession, budget_reason, describe_holder
from upgrader.planner import tolerated_failures
from upgrader.redaction import Redactor
from upgrader.repository import RunRepository, WindowRelease
from upgrader.windows import (
    DEFAULT_RECHECK_SECONDS,
    Clock,
    SystemClock,
    WindowRepository,
    check_window,
    decide,
    policy,
    stamp,
    wait_seconds,
)

State = dict[str, Any]


class ManifestStore(Protocol):
    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> Any: ...  # noqa: N803


# ------------------------------------------------------------------------------------------ parent
def prepare_run(event: State, *, runs: RunRepository) -> State:
    """Mark the run started; plan its waves (the wave numbers its rows carry, in order)."""
    upgrade_id, run_name, operation = int(event["upgradeId"]), str(event["runName"]), str(event["operation"])
    upgrade, rows = runs.start_run(upgrade_id, run_name, operation)
    sizes: dict[int, int] = defaultdict(int)
    for row in rows:
        sizes[int(row["wave"])] += 1
    waves = sorted(sizes)
    parameters = upgrade["parameters"] or {}
    request = event.get("request") or {}
    return {
        "upgradeId": upgrade_id,
        "runName": run_name,
        "operation": operation,
        "scope": request.get("scope", "upgrade" if operation == "upgrade" else "customer"),
        "strategy": upgrade["strategy"] if operation == "upgrade" else "rollback",
        # `wave` is the position in `waves`; `waves` the rows' own wave numbers (a resumed upgrade
        # runs only the waves it has customers left in).
        "waves": waves,
        "totalWaves": len(waves),
        "waveSizes": [sizes[w] for w in waves],
        "wave": 0,
        "slice": 0,  # the slice of the wave (see prepare_wave)
        "manifestPrefix": f"runs/{run_name}",
        "maxConcurrency": int(request.get("maxConcurrency") or parameters.get("maxConcurrency", 10)),
        "pollSeconds": int(parameters.get("pollSeconds", 15)),
        # How often a customer whose release another operation holds looks again.
        "leaseWaitSeconds": int(parameters.get("pollSeconds", 15)),
        "bakeSeconds": int(parameters.get("bakeSeconds", 0)),
        "approvalTimeoutSeconds": int(parameters.get("approvalTimeoutSeconds", 7 * 24 * 3600)),
        "failureThreshold": parameters.get("failureThreshold"),
        # progressive: "manual" (every step waits for /continue) or "bake" (bakeSeconds between steps)
        "stepGate": parameters.get("stepGate") if operation == "upgrade" else None,
        # maintenance windows: a customer starts only in its own (rollbacks never wait for one)
        "respectWindows": bool(parameters.get("respectWindows")) and operation == "upgrade",
    }


def prepare_wave(
    event: State, *, runs: RunRepository, s3: ManifestStore, bucket: str, windows: WindowRepository | None = None,
    now: datetime | None = None, recheck: int = DEFAULT_RECHECK_SECONDS,
) -> State:  # fmt: skip
    """Write the S3 manifest of the wave's next slice (the Distributed Map's items), right before it
    runs: a wave that follows a long canary gate still finds its manifest, whatever the bucket's
    expiry. Idempotent (the same rows, the same key).

    Without maintenance windows a wave is one slice: all its customers. With them, the slice holds only
    the customers that may start now; those whose window is closed stay pending until their next
    opening (`windowWaits` of them; the run waits `windowWaitSeconds` for the earliest, `nextOpening`,
    when nobody is ready) and get no child execution, so they hold no concurrency slot
    (`upgrader.windows`). `slice` is the slice's number in its wave (0: the first, which offers every
    customer of the wave; later ones only those that waited)."""
    state = dict(event)
    number, run_name = _wave_number(state), str(state["runName"])
    first = int(state.get("slice") or 0) == 0
    state["slice"] = int(state.get("slice") or 0)
    state["windowWaits"], state["nextOpening"], state["windowWaitSeconds"] = 0, None, 0
    if state.get("respectWindows") and windows is not None:
        moment = now or datetime.now(UTC)
        sliced = windows.prepare_slice(run_name, number, first=first, now=moment)
        items = sliced.ready
        opening = sliced.next_opening
        if opening is not None:
            state["windowWaits"], state["nextOpening"] = len(sliced.waiting), stamp(opening)
            state["windowWaitSeconds"] = wait_seconds(opening, moment, recheck)
    else:
        items = [{"logId": row["id"], "customerId": row["customer_id"]} for row in runs.wave_rows(run_name, number)]
    if items:
        s3.put_object(
            Bucket=bucket,
            Key=f"{state['manifestPrefix']}/wave-{state['wave']}.json",
            Body=json.dumps(items).encode(),
            ContentType="application/json",
        )
    state["sliceSize"] = len(items)
    state["bucket"] = bucket
    if state["operation"] == "upgrade" and first:
        runs.set_current_wave(int(state["upgradeId"]), number)
    return state


def _wave_number(state: State) -> int:
    """The wave number (the rows' own) of the state's current position."""
    waves = state.get("waves")
    return int(waves[int(state["wave"])]) if waves else int(state["wave"])


def tolerated(state: State, wave_size: int) -> int:
    """The failure budget of the state's current wave (see `planner.tolerated_failures`)."""
    return tolerated_failures(state["strategy"], _wave_number(state), wave_size, state.get("failureThreshold"))


def evaluate_wave(event: State, *, runs: RunRepository, windows: WindowRepository | None = None) -> State:
    """Decide what follows a slice of a wave: the wave's next slice (customers of it still wait for their
    maintenance window), the next wave, the canary gate (or a progressive step's manual gate), or the
    end (done or halted). The failure budget is judged after every slice, over the whole wave."""
    state = dict(event)
    map_error = _failure_text(state.pop("mapError", None))
    position, number, run_name = int(state["wave"]), _wave_number(state), str(state["runName"])
    waiting = 0
    if state.get("respectWindows") and windows is not None and not map_error:
        waiting = windows.waiting_in_wave(run_name, number)
    closed = runs.close_unfinished(run_name, number, "the worker did not record a result for this customer",
                                   wave_over=not waiting)  # fmt: skip
    counts = runs.wave_counts(run_name, number)
    failed = counts.get("failed", 0) + counts.get("rolled_back", 0)
    size = sum(counts.values())
    state["lastWave"] = {"wave": number, "size": size, "completed": counts.get("completed", 0), "failed": failed,
                         "skipped": counts.get("skipped", 0), "unrecorded": closed}  # fmt: skip
    has_next = position + 1 < int(state["totalWaves"])
    upgrade_id = int(state["upgradeId"])
    if state["operation"] == "upgrade":
        total = runs.total_waves(upgrade_id)
        if map_error:
            # The wave itself could not run (manifest unreadable, Map Run failed): never go on blindly.
            runs.halt(upgrade_id, f"wave {number + 1} of {total} could not run: {map_error}")
        # Each failure is checked against the budget when it is recorded (and each customer checks
        # it again before helm); this is the backstop, for every slice of every wave, the last one
        # included. No child of this run is running now (the Map ended with all its children; a failed
        # Map Run stops them) and the run is not in a window wait, so these halts have no wait to end.
        allowed = tolerated(state, size)
        if failed > allowed:
            runs.halt(upgrade_id, budget_reason(number, total, failed, size, allowed))
        if runs.halt_reason(upgrade_id) is not None:
            if waiting:  # the wave is over after all: its customers still waiting are skipped at the end
                runs.wave_over(run_name, number)
            state["decision"] = "halt"
            return state
    elif map_error or runs.stop_reason(run_name):
        state["decision"] = "halt"
        return state
    if waiting:
        state["slice"] = int(state.get("slice") or 0) + 1
        state["decision"] = "slice"
        return state
    if not has_next:
        state["decision"] = "done"
        return state
    state["wave"] = position + 1
    state["slice"] = 0
    upgrading = state["operation"] == "upgrade"
    canary_gate = upgrading and state["strategy"] == "canary" and number == 0
    step_gate = upgrading and state["strategy"] == "progressive" and state.get("stepGate") == "manual"
    state["decision"] = "await_continue" if canary_gate or step_gate else "next"
    return state


def await_continue(event: State, *, runs: RunRepository) -> State:
    """Open a gate: keep the task token where /continue (the canary's approval) and /abort find it.

    gate "bake": a timed wait between waves (the task times out when the bake is over); an abort fails
    the task at once, so the upgrade does not wait out the bake.
    """
    gate = str(event.get("gate") or "approval")
    seconds = int(event["seconds"]) if event.get("seconds") is not None else None
    if not runs.store_task_token(int(event["upgradeId"]), str(event["taskToken"]), int(event["wave"]),
                                 gate=gate, seconds=seconds):  # fmt: skip
        raise GateClosed(f"upgrade {event['upgradeId']} was halted or aborted; the gate stays closed")
    return {"waiting": True, "gate": gate}


def await_window(event: State, *, windows: WindowRepository) -> State:
    """WaitForWindows (.waitForTaskToken): keep the run's task token where an abort or a failure-budget
    halt finds it. The task times out at the earliest opening of a waiting customer's window (or the
    recheck); a stopped run ends the wait at once (GateClosed)."""
    if not windows.store_run_token(str(event["runName"]), str(event["taskToken"])):
        raise GateClosed(f"run {event['runName']} was halted or aborted; no window wait")
    return {"waiting": True, "gate": "window"}


def finalize_run(event: State, *, runs: RunRepository) -> State:
    """Close the run: leftover rows, final status, completed_at. Safe to run twice."""
    failure = _failure_text(event.get("failure"))
    upgrade_id, run_name = int(event["upgradeId"]), str(event["runName"])
    runs.close_unfinished(run_name, None, failure or "the run ended before this customer finished")
    if event.get("operation") != "upgrade":
        whole = event.get("scope") == "upgrade"
        counts = runs.finalize_rollback(upgrade_id, run_name, whole_upgrade=whole)
        return {"upgradeId": upgrade_id, "runName": run_name, "operation": "rollback", **counts, "next": None}
    upgrade = runs.finalize_upgrade(upgrade_id, run_name, failure)
    result: State = {
        "upgradeId": upgrade["id"],
        "status": upgrade["status"],
        "completed": upgrade["completed_customers"],
        "failed": upgrade["failed_customers"],
        "haltReason": upgrade["halt_reason"],
        "next": None,  # the state machine's IsRollbackRequested choice reads it
    }
    parameters = upgrade["parameters"] or {}
    if upgrade["status"] == "aborted" and parameters.get("abortRollback"):
        # Aborted with rollback: the same execution goes on to roll back what it changed.
        rollback_run = f"{run_name}-rollback"
        runs.create_abort_rollback(upgrade_id, requested_by=parameters.get("abortedBy"), run_name=rollback_run)
        if runs.run_size(rollback_run):
            result["next"] = {"upgradeId": upgrade_id, "runName": rollback_run, "operation": "rollback",
                              "scope": "upgrade"}  # fmt: skip
    return result


# ------------------------------------------------------------------------------------------- child
def begin_customer(
    event: State, *, runs: RunRepository, windows: WindowRepository | None = None, now: datetime | None = None
) -> State:
    """Claim the customer's row; 'done' when it is already final or its run was stopped.

    With maintenance windows respected (the run says so), first: 'done' with status 'pending' when its
    window has closed since its slice was prepared (the Map may have queued it; back to waiting for its
    next opening, a later slice starts it), or 'done' with status 'skipped' when the window does not
    open before the deadline; see `upgrader.windows`."""
    if event.get("respectWindows") and windows is not None:
        deferred = check_window(event, windows=windows, now=now or datetime.now(UTC))
        if deferred is not None:
            return deferred
    action, row, parameters = runs.claim_customer(int(event["logId"]))
    upgrading = row["operation"] == "upgrade"
    return {
        "action": action,
        "status": row["status"],
        "customerId": row["customer_id"],
        "namespace": row["namespace"],
        "release": row["release_name"],
        "component": row["component"],
        "version": row["to_version"],
        "operation": row["operation"],
        "attempt": row["attempt"],
        "autoRollback": bool(parameters.get("autoRollback")) and upgrading,
        "healthCheck": (parameters.get("healthCheck") if upgrading else None) or {"enabled": False},
        "blueGreen": bool(parameters.get("blueGreen")) and upgrading,
        "finalizeOldSlot": bool(parameters.get("blueGreen") and parameters.get("finalizeOldSlot")) and upgrading,
    }


def _spec(row: State, operation: HelmOperation, *, version: str | None = None, revision: int | None = None,
          chart_version: str | None = None, slot: str | None = None, chart_name: str | None = None) -> HelmJobSpec:  # fmt: skip
    """A helm operation of one log row (its id names the Job: one row, one Job per operation)."""
    return HelmJobSpec(
        upgrade_id=int(row["upgradeId"] if "upgradeId" in row else row["upgrade_id"]),
        log_id=int(row["logId"] if "logId" in row else row["id"]),
        customer_id=str(row["customerId"] if "customerId" in row else row["customer_id"]),
        component=str(row["component"]),
        namespace=str(row["namespace"]),
        release=str(row["release"] if "release" in row else row["release_name"]),
        operation=operation,
        version=version,
        revision=revision,
        attempt=int(row["attempt"]),
        chart_version=chart_version,
        slot=slot,
        chart_name=chart_name,
    )


def _event_row(event: State) -> State:
    """The parts of a log row a child event carries (BeginCustomer's result plus the ids)."""
    return {**event["customer"], "upgradeId": event["upgradeId"], "logId": event["logId"]}


def start_helm_job(event: State, *, leases: LeaseRepository, cluster: ClusterGateway,
                   learn_first_wait: bool = True, clock: Clock | None = None) -> State:  # fmt: skip
    """Take the release's lease and create the customer's helm Job (or adopt the one a retry finds).

    Under the lease, in one transaction: the run's stop flag, the wave's failure budget and the
    customer's maintenance window are checked, the release is read (what it holds before helm is
    recorded), and the Job is created before the commit (see `upgrader.leases` for why an abort is then
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
                closed = _window_closed(lease, clock) if stage == "start" else None
                if closed is not None:  # it would wait for the lease, then for its window: wait for the window
                    return closed
                why = describe_holder(lease.holder)
                lease.wait(why)
                return {"phase": "waiting", "stage": stage, "waitingFor": why}
            existing = cluster.helm_jobs_of(lease.log_id)
            if stage in ("autorollback", "recover_after"):
                started = _restore(lease, stage, existing, cluster=cluster)
            elif stage == "switch":
                started = _switch(lease, event, existing, cluster=cluster)
            elif stage == "finalize":
                started = _finalize(lease, existing, cluster=cluster)
            elif lease.row["operation"] == "upgrade":
                started = _start_upgrade(lease, existing, cluster=cluster, clock=clock)
            else:
                started = _start_rollback(lease, existing, cluster=cluster)
            if started.get("phase") == "pending":
                typical = lease.row.get("typical_helm_seconds") if learn_first_wait else None
                started["firstWaitSeconds"] = first_wait_seconds(typical, int(event.get("pollSeconds", 15)))
            return started
    except ClusterTransientError as exc:
        # The lease transaction rolled back (nothing taken, nothing recorded). A Job whose create
        # reached the cluster anyway is adopted next time. The customer waits for the API to come back.
        since = _outage_since(event.get("job"), exc)
        why = f"Kubernetes API unreachable since {_stamp(since)}: {exc}"
        leases.note_waiting(int(event["logId"]), why)
        return {"phase": "waiting", "stage": stage, "waitingFor": why, "unreachableSince": since}


# The longest first wait: a Job that typically runs longer is still looked at within the hour.
MAX_FIRST_WAIT_SECONDS = 3600


def first_wait_seconds(typical_helm_seconds: float | None, poll_seconds: int) -> int:
    """How long to wait before the first look at a Job just started: the component's typical helm
    duration (rounded down: the Job has likely not finished any earlier, so no poll is spent before
    then), or the configured interval while nothing is recorded yet."""
    if typical_helm_seconds is None:
        return poll_seconds
    return min(MAX_FIRST_WAIT_SECONDS, max(0, int(typical_helm_seconds)))


# How long a customer waits for an unreachable Kubernetes API before it fails (the Job, if it was
# created, keeps running in the cluster: the reconciler records its outcome).
MAX_OUTAGE_SECONDS = 3600


def _outage_since(previous: Any, exc: Exception, now: float | None = None) -> float:
    """When the outage began (kept across the wait loop); past MAX_OUTAGE_SECONDS the error is raised."""
    now = time.time() if now is None else now
    since = float((previous or {}).get("unreachableSince") or now) if isinstance(previous, dict) else now
    if now - since > MAX_OUTAGE_SECONDS:
        raise exc
    return since


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _started(name: str, operation: str, **extra: Any) -> State:
    return {"jobName": name, "stage": operation, "phase": "pending", **extra}


def _stopped(lease: LeaseSession, *, recovered: bool) -> str | None:
    """Why this customer must not start helm: its run was stopped (abort, halt) or its wave is over budget."""
    reason = lease.stop_reason or lease.budget_exceeded()
    if reason is None:
        return None
    return f"release recovered; not upgraded: {reason}" if recovered else f"not started: {reason}"


def _window_closed(lease: LeaseSession, clock: Clock | None) -> State | None:
    """The window decision made again under the lease, right before helm (upgrade rows of a run that
    respects windows): None to go on; else the customer is deferred to its next opening, or skipped.

    A row still `pending` here was deferred by an earlier delivery of this step: it stays deferred."""
    row = lease.row
    parameters = row.get("upgrade_parameters") or {}
    if row["operation"] != "upgrade" or not parameters.get("respectWindows"):
        return None
    if row["status"] == "pending" and row["window_opens_at"] is not None:
        opens = row["window_opens_at"].replace(tzinfo=UTC)  # a timestamp column: UTC
        lease.defer(opens)
        return {"phase": "deferred", "stage": "upgrade", "waitUntil": stamp(opens)}
    expected, deadline = policy(parameters)
    decision = decide(row["maintenance_window"], (clock or SystemClock()).now(), expected=expected,
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
    upgrade_name = cluster.job_name(_spec(row, "upgrade"))
    if upgrade_name in existing:  # an earlier attempt created it: adopt
        lease.record_job(upgrade_name)
        return _started(upgrade_name, "upgrade")
    slot_name = cluster.job_name(_spec(row, "slot"))
    if slot_name in existing:  # blue-green: the slot step never moves activeSlot, so its slot is the idle one
        release = cluster.release_status(row["namespace"], row["release_name"])
        found = release.slots.get(row["component"])
        lease.record_job(slot_name)
        return _started(slot_name, "slot", slot=found.idle if found else None,
                        chartVersion=row["chart_version"] or release.chart_version)  # fmt: skip
    recover_name = cluster.job_name(_spec(row, "recover"))
    if recover_name in existing and not existing[recover_name]:
        lease.record_job(recover_name)
        return _started(recover_name, "recover")
    reason = _stopped(lease, recovered=recover_name in existing)
    if reason:
        lease.skip(reason)
        return {"phase": "skipped", "stage": "upgrade", "reason": reason}
    closed = _window_closed(lease, clock)
    if closed is not None:
        return closed
    release = cluster.release_status(row["namespace"], row["release_name"])
    if not release.exists:
        raise ReleaseNotReady(f"Helm release '{row['release_name']}' not found in namespace '{row['namespace']}'")
    if release.stuck:
        if recover_name in existing:
            raise ReleaseNotReady(
                f"Helm release '{release.release}' is still {release.status} (revision {release.revision}) after "
                f"the recovery Job {recover_name}; not touching it"
            )
        return _recover(lease, release, existing, cluster=cluster)
    chart_version = row["chart_version"] or release.chart_version
    if not chart_version:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' records no chart version, so the chart cannot be pinned; "
            "deploy with an explicit chartVersion"
        )
    blue_green = bool((row.get("upgrade_parameters") or {}).get("blueGreen"))
    if blue_green or row["component"] in release.slots:
        return _start_slot(lease, release, chart_version, blue_green=blue_green, cluster=cluster)
    spec = _spec(row, "upgrade", version=row["to_version"], chart_version=chart_version)
    lease.record_plan(revision_before=release.revision, version_before=release.versions.get(row["component"]),
                      chart_version=chart_version)  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name)
    return _started(name, "upgrade")


def _start_slot(lease: LeaseSession, release: ReleaseInfo, chart_version: str, *, blue_green: bool,
                cluster: ClusterGateway) -> State:  # fmt: skip
    """Blue-green, step 1: the new version onto the idle slot; the active slot keeps serving.

    A release that follows the blue-green contract is only ever upgraded this way (an in-place image
    change would set a value its chart does not read), and only when the deploy asked for it: a plain
    deploy is refused for it, as a blue-green deploy is for a release without slots."""
    row = lease.row
    component = row["component"]
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
    idle, version = slots.idle, str(row["to_version"])
    note = (f"blue-green: {component} {version} onto the idle slot {idle}; {slots.active} keeps serving "
            f"{slots.version} until the switch")  # fmt: skip
    lease.record_plan(revision_before=release.revision, version_before=slots.version, chart_version=chart_version,
                      note=note)  # fmt: skip
    spec = _spec(row, "slot", version=version, chart_version=chart_version, slot=idle, chart_name=release.chart_name)
    name = cluster.start_helm_job(spec)
    lease.record_job(name)
    return _started(name, "slot", slot=idle, chartVersion=chart_version)


def _switch(lease: LeaseSession, event: State, existing: dict[str, bool], *, cluster: ClusterGateway) -> State:
    """Blue-green, step 2 (under the lease the row still holds, after the idle slot proved healthy): the
    Service follows the idle slot. Not when the run was stopped meanwhile: the new version then stays
    on the idle slot, unused, and the active slot keeps serving."""
    row, slot_job = lease.row, event.get("slotJob") or {}
    slot, chart_version = slot_job.get("slot"), slot_job.get("chartVersion") or row["chart_version"]
    name = cluster.job_name(_spec(row, "switch"))
    if name in existing:
        lease.record_job(name)
        return _started(name, "switch", slot=slot)
    if lease.stop_reason:
        reason = (f"not switched: {lease.stop_reason}; {row['to_version']} stays on the idle slot {slot}, the "
                  "active slot keeps serving")  # fmt: skip
        lease.skip(reason)
        return {"phase": "skipped", "stage": "switch", "reason": reason}
    release = cluster.release_status(row["namespace"], row["release_name"])
    found = release.slots.get(row["component"])
    if slot is None and found is not None:
        slot = found.idle
    if release.stuck or found is None or found.tags.get(str(slot)) != row["to_version"]:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' changed under the upgrade: slot {slot} no longer runs "
            f"{row['to_version']} ({release.status}, revision {release.revision}); not switching"
        )
    spec = _spec(row, "switch", slot=slot, chart_version=str(chart_version or release.chart_version),
                 chart_name=release.chart_name)  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name, note=f"blue-green: slot {slot} is healthy; switching {row['component']} to it")
    return _started(name, "switch", slot=slot)


def _finalize(lease: LeaseSession, existing: dict[str, bool], *, cluster: ClusterGateway) -> State:
    """Blue-green, step 3 (finalizeOldSlot, after the switch): the old slot's tag emptied, its Deployment
    removed. The upgrade itself is done: a run stopped meanwhile, or an old slot already empty, keeps
    what is there and says so."""
    row = lease.row
    name = cluster.job_name(_spec(row, "finalize"))
    if name in existing:
        lease.record_job(name)
        return _started(name, "finalize")
    release = cluster.release_status(row["namespace"], row["release_name"])
    found = release.slots.get(row["component"])
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
    spec = _spec(row, "finalize", slot=old, chart_version=row["chart_version"] or release.chart_version,
                 chart_name=release.chart_name)  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name, note=f"blue-green: finalizing, the old slot {old} ({found.tags[old]}) is removed")
    return _started(name, "finalize", slot=old)


def _recover(lease: LeaseSession, release: ReleaseInfo, existing: dict[str, bool], *,
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
    spec = _spec(lease.row, "recover", revision=release.last_deployed_revision)
    name = cluster.start_helm_job(spec)
    lease.record_job(
        name,
        note=f"release was stuck in {release.status} (revision {release.revision}); recovering: "
        f"helm rollback to revision {release.last_deployed_revision} (Job {name})",
    )
    return _started(name, "recover", revision=release.last_deployed_revision)


def _start_rollback(lease: LeaseSession, existing: dict[str, bool], *, cluster: ClusterGateway) -> State:
    """Restore the upgrade's component on this customer, and nothing else (see `upgrader.rollbacks`)."""
    row = lease.row
    for operation in ("rollback", "restore", "switch"):
        name = cluster.job_name(_spec(row, operation))  # type: ignore[arg-type]
        if name in existing:
            lease.record_job(name)
            return _started(name, operation)
    if lease.stop_reason:
        reason = f"not started: {lease.stop_reason}"
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    upgraded = lease.upgraded_row()
    release = cluster.release_status(row["namespace"], row["release_name"])
    if not release.exists:
        raise ReleaseNotReady(f"Helm release '{row['release_name']}' not found in namespace '{row['namespace']}'")
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
    component, target = row["component"], row["to_version"]
    current = release.versions.get(component)
    left_by_upgrade = (upgraded or {}).get("version_after") or row["from_version"]
    settled = release.status == "deployed"  # a failed newest revision (e.g. a failed rollback): try again
    if current == target and settled:
        reason = f"nothing to roll back: the release already runs {component} {target}"
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    if current != left_by_upgrade:
        reason = (
            f"not rolled back: the release runs {component} {current}, not {left_by_upgrade} as upgrade "
            f"{row['upgrade_id']} left it; it was changed since, and that change is not reverted"
        )
        lease.skip(reason)
        return {"phase": "skipped", "stage": "rollback", "reason": reason}
    if component in release.slots:
        return _switch_back(lease, release, cluster=cluster)
    revision_after = (upgraded or {}).get("revision_after")
    revision_before = (upgraded or {}).get("revision_before")
    if revision_after and revision_before and release.revision == revision_after:
        spec = _spec(row, "rollback", revision=int(revision_before))
        note = (f"release still at revision {release.revision}, as upgrade {row['upgrade_id']} left it: "
                f"helm rollback to revision {revision_before}")  # fmt: skip
    else:
        if not release.chart_version:
            raise ReleaseNotReady(f"Helm release '{release.release}' records no chart version; cannot pin the chart")
        spec = _spec(row, "restore", version=target, chart_version=release.chart_version)
        note = (f"release changed since upgrade {row['upgrade_id']} (now revision {release.revision}): helm upgrade "
                f"--reuse-values setting only {component} back to {target}, chart {release.chart_version} kept")  # fmt: skip
    lease.record_plan(revision_before=release.revision, version_before=current, chart_version=release.chart_version,
                      note=note)  # fmt: skip
    name = cluster.start_helm_job(spec)
    lease.record_job(name)
    return _started(name, spec.operation, revision=spec.revision)


def _switch_back(lease: LeaseSession, release: ReleaseInfo, *, cluster: ClusterGateway) -> State:
    """Blue-green rollback: the Service goes back to the other slot at once; it still runs the version
    to return to, so no image is pulled. Refused (skipped, with the reason) when that slot was
    finalized or holds another version: rolling forward again is a deploy."""
    row = lease.row
    component, target = row["component"], row["to_version"]
    slots = release.slots[component]
    if slots.tags.get(slots.idle) != target:
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
    name = cluster.start_helm_job(_spec(row, "switch", slot=slots.idle, chart_version=release.chart_version,
                                        chart_name=release.chart_name))  # fmt: skip
    lease.record_job(name)
    return _started(name, "switch", slot=slots.idle)


def _restore(lease: LeaseSession, stage: str, existing: dict[str, bool], *, cluster: ClusterGateway) -> State:
    """Under the lease this row already holds: roll back its own upgrade after a failed health check
    (autorollback: exact, the release is still at the revision it produced), or recover a release its
    killed Job left pending-* (recover_after). An abort does not stop these: they restore."""
    row = lease.row
    operation: HelmOperation = "rollback" if row["operation"] == "upgrade" else "recover"
    name = cluster.job_name(_spec(row, operation))
    if name in existing:
        lease.record_job(name)
        return _started(name, operation)
    if stage == "autorollback":
        if not row["revision_before"]:
            raise ReleaseNotReady("the revision before the upgrade was not recorded; cannot roll back exactly")
        revision = int(row["revision_before"])
    else:
        release = cluster.release_status(row["namespace"], row["release_name"])
        if not release.stuck:  # someone (or helm itself) finished it meanwhile
            return {"phase": "succeeded", "stage": operation, "jobName": None, "release": release.snapshot(),
                    "output": f"release {release.status} at revision {release.revision}; nothing to recover"}  # fmt: skip
        if release.last_deployed_revision is None:
            raise ReleaseNotReady(f"Helm release '{release.release}' is {release.status} with nothing to recover to")
        revision = release.last_deployed_revision
    spec = _spec(row, operation, revision=revision)
    name = cluster.start_helm_job(spec)
    lease.record_job(name)
    return _started(name, operation, revision=revision)


def check_helm_job(event: State, *, cluster: ClusterGateway, outputs: HelmOutputStore) -> State:
    """Look at the customer's current Job; once it has ended, read what the release holds now.

    upgrade/restore Job failed and the release left pending-* (killed by its deadline mid-operation):
    "stuck", so a recovery runs before any result is recorded. A finished pre-check recovery says
    "recovered" (the upgrade comes next).

    A finished Job's output is redacted with the release's secrets (`upgrader.redaction`) and written to
    the database here (`outputs`); the result carries none of it, only the redacted error.
    """
    job = event["job"]
    stage = str(job.get("stage", "upgrade"))
    row = _event_row(event)
    if job.get("jobName") is None:  # nothing was started (see _restore): the result is already known
        return dict(job)
    try:
        return _check_helm_job(event, job, stage, row, cluster, outputs)
    except ClusterTransientError as exc:  # the Job runs on; look again until the API answers
        since = _outage_since(job, exc)
        unreachable: State = {"jobName": job["jobName"], "stage": stage, "phase": "unreachable",
                              "unreachableSince": since, "error": f"Kubernetes API unreachable: {exc}"}  # fmt: skip
        return _carried(job, unreachable)


def _check_helm_job(event: State, job: State, stage: str, row: State, cluster: ClusterGateway,
                    outputs: HelmOutputStore) -> State:  # fmt: skip
    state: JobState = cluster.get_helm_job(_spec(row, stage, revision=job.get("revision")))  # type: ignore[arg-type]
    result = _carried(job, {"jobName": state.name, "stage": stage, "phase": state.phase})
    if not (state.finished or state.phase == "missing"):
        return result
    release = cluster.release_status(row["namespace"], row["release"])
    redactor = Redactor(release.secrets)
    result["error"] = redactor.text(state.error)
    if state.seconds is not None:
        result["helmSeconds"] = state.seconds
    if state.phase == "missing":
        result["phase"] = "failed"
        result["error"] = f"Job {state.name} disappeared before it finished"
    elif state.output:
        # Written here, never returned into Step Functions state (its history, CloudWatch Logs).
        outputs.record(int(event["logId"]), state.name, stage=stage, phase=state.phase,
                       output=str(redactor.text(state.output)), header=header_for(stage, event.get("stage")))  # fmt: skip
    result["release"] = release.snapshot()
    restoring = event.get("stage") in ("autorollback", "recover_after")
    if (
        result["phase"] == "failed"
        and release.stuck
        and stage in ("upgrade", "restore", "slot", "switch", "finalize")
        and (not restoring)
    ):
        result["phase"] = "stuck"
        result["error"] = f"{result['error']}; the release was left {release.status} (revision {release.revision})"
    elif stage == "recover" and not restoring:
        if result["phase"] == "succeeded":
            result["phase"] = "recovered"
        else:
            result["error"] = f"could not recover the stuck release: {result['error']}"
    return result


def _carried(job: State, result: State) -> State:
    """What a Job's later looks keep from its start: the revision it goes to, its blue-green slot."""
    for key in ("revision", "slot", "chartVersion"):
        if key in job:
            result[key] = job[key]
    return result


def check_rollout(event: State, *, cluster: ClusterGateway, now: float | None = None) -> State:
    """After a successful helm upgrade: are the component's workloads rolled out (and healthy)?

    Blue-green, after the slot step: the idle slot's workloads (and its HTTP path, through the slot's
    preview Service `<release>-<component>-<slot>`), before any traffic is switched to it."""
    customer, check = event["customer"], event["customer"]["healthCheck"]
    job = event.get("job") or {}
    slot = job.get("slot") if job.get("stage") == "slot" else None
    result = _rollout_verdict(event, customer, check, slot, cluster, time.time() if now is None else now)
    if slot is not None and result["phase"] == "unhealthy":
        result["detail"] = f"idle slot {slot}: {result['detail']}; nothing switched, the active slot keeps serving"
    return result


def _rollout_verdict(event: State, customer: State, check: State, slot: str | None, cluster: ClusterGateway,
                     now: float) -> State:  # fmt: skip
    deadline = float((event.get("health") or {}).get("deadline") or now + int(check.get("timeoutSeconds", 300)))
    try:
        rollout = cluster.rollout_status(customer["namespace"], customer["release"], customer["component"], slot)
    except ClusterTransientError as exc:  # not a verdict on the workloads: wait, up to the check's deadline
        rollout = RolloutState("progressing", f"Kubernetes API unreachable: {exc}")
    detail = rollout.detail
    if rollout.phase == "failed":
        return {"phase": "unhealthy", "deadline": deadline, "detail": f"rollout failed: {detail}"}
    if rollout.phase == "ready":
        if not check.get("httpPath"):
            return {"phase": "healthy", "deadline": deadline, "detail": detail}
        service = check.get("service") or f"{customer['release']}-{customer['component']}"
        if slot is not None:  # the slot's preview Service: the component's own one still selects the active slot
            service = f"{customer['release']}-{customer['component']}-{slot}"
        try:
            probe = cluster.http_health(customer["namespace"], service, str(check.get("port", "http")),
                                        check["httpPath"])  # fmt: skip
        except ClusterTransientError as exc:
            probe = HttpHealth(False, None, f"Kubernetes API unreachable: {exc}")
        if probe.healthy:
            return {"phase": "healthy", "deadline": deadline, "detail": f"{detail}; {probe.detail}"}
        detail = f"HTTP health check {check['httpPath']} failed: {probe.detail}"
    if now >= deadline:
        timeout = int(check.get("timeoutSeconds", 300))
        return {"phase": "unhealthy", "deadline": deadline, "detail": f"not healthy within {timeout} s: {detail}"}
    return {"phase": "waiting", "deadline": deadline, "detail": detail}


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
        error = _failure_text(failure)
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
                                        release_windows=release_windows)  # fmt: skip
    return {"logId": row["id"], "status": row["status"], "recorded": changed}


def _failure_text(failure: Any) -> str | None:
    """Readable text from a Step Functions Catch result {Error, Cause}."""
    if not failure:
        return None
    if isinstance(failure, str):
        return failure
    error, cause = failure.get("Error", "Error"), failure.get("Cause", "")
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            cause = parsed["errorMessage"]
    except (TypeError, ValueError):
        pass
    return f"{error}: {cause}" if cause else str(error)
