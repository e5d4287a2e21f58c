"""The state machine's steps as domain functions. Each is idempotent: delivered twice, it acts once.

Parent (one execution per run):  prepare_run -> [wave map] -> evaluate_wave -> await_continue? -> finalize_run
Child (one per customer):        begin_customer -> start_helm_job -> check_helm_job (loop)
                                 -> check_rollout (loop) -> [automatic rollback] -> finish_customer
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any, Protocol

from upgrader.cluster.types import ClusterGateway, HelmJobSpec, JobState, ReleaseInfo
from upgrader.errors import GateClosed, ReleaseBusy, ReleaseNotReady, UpgradeHalted
from upgrader.repository import RunRepository

State = dict[str, Any]


class ManifestStore(Protocol):
    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> Any: ...  # noqa: N803


# ------------------------------------------------------------------------------------------ parent
def prepare_run(event: State, *, runs: RunRepository, s3: ManifestStore, bucket: str) -> State:
    """Mark the upgrade started and write one S3 manifest per wave (the Distributed Map's items)."""
    upgrade_id, run_name, operation = int(event["upgradeId"]), str(event["runName"]), str(event["operation"])
    upgrade, rows = runs.start_run(upgrade_id, run_name, operation)
    waves: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        waves[row["wave"]].append({"logId": row["id"], "customerId": row["customer_id"]})
    ordered = [waves[w] for w in sorted(waves)]
    prefix = f"runs/{run_name}"
    for index, items in enumerate(ordered):
        s3.put_object(
            Bucket=bucket,
            Key=f"{prefix}/wave-{index}.json",
            Body=json.dumps(items).encode(),
            ContentType="application/json",
        )
    parameters = upgrade["parameters"] or {}
    request = event.get("request") or {}
    return {
        "upgradeId": upgrade_id,
        "runName": run_name,
        "operation": operation,
        "scope": request.get("scope", "upgrade" if operation == "upgrade" else "customer"),
        "strategy": upgrade["strategy"] if operation == "upgrade" else "rollback",
        "totalWaves": len(ordered),
        "waveSizes": [len(items) for items in ordered],
        "wave": 0,
        "bucket": bucket,
        "manifestPrefix": prefix,
        "maxConcurrency": int(request.get("maxConcurrency") or parameters.get("maxConcurrency", 10)),
        "pollSeconds": int(parameters.get("pollSeconds", 15)),
        "bakeSeconds": int(parameters.get("bakeSeconds", 0)),
        "approvalTimeoutSeconds": int(parameters.get("approvalTimeoutSeconds", 7 * 24 * 3600)),
        "failureThreshold": parameters.get("failureThreshold"),
    }


def tolerated_failures(state: State, wave_size: int) -> int:
    """Failed customers a wave may have before the upgrade halts.

    Default: none (a safe default: one failure stops the roll-out, and the operator decides).
    The canary wave never tolerates a failure.
    """
    threshold = state.get("failureThreshold") or {}
    if state["strategy"] == "canary" and state["wave"] == 0:
        return 0
    if "count" in threshold:
        return int(threshold["count"])
    if "percent" in threshold:
        return int(wave_size * float(threshold["percent"]) / 100)
    return 0


def evaluate_wave(event: State, *, runs: RunRepository) -> State:
    """Decide what follows a wave: the next wave, the canary gate, or the end (done or halted)."""
    state = dict(event)
    map_error = _failure_text(state.pop("mapError", None))
    wave = int(state["wave"])
    closed = runs.close_unfinished(state["runName"], wave, "the worker did not record a result for this customer")
    counts = runs.wave_counts(state["runName"], wave)
    failed = counts.get("failed", 0) + counts.get("rolled_back", 0)
    size = sum(counts.values())
    state["lastWave"] = {"wave": wave, "size": size, "completed": counts.get("completed", 0), "failed": failed,
                         "skipped": counts.get("skipped", 0), "unrecorded": closed}  # fmt: skip
    has_next = wave + 1 < int(state["totalWaves"])
    if map_error and state["operation"] == "upgrade":
        # The wave itself could not run (manifest unreadable, Map Run failed): never go on blindly.
        runs.halt(int(state["upgradeId"]), f"wave {wave + 1} of {state['totalWaves']} could not run: {map_error}")
    if state["operation"] == "upgrade":
        allowed = tolerated_failures(state, size)
        if failed > allowed and has_next:
            runs.halt(
                int(state["upgradeId"]),
                f"wave {wave + 1} of {state['totalWaves']}: {failed} of {size} customers failed (tolerated: {allowed})",
            )
        upgrade_halted = runs.halt_reason(int(state["upgradeId"])) is not None
        if upgrade_halted:
            state["decision"] = "halt"
            return state
    if not has_next:
        state["decision"] = "done"
        return state
    state["wave"] = wave + 1
    if state["operation"] == "upgrade":
        runs.set_current_wave(int(state["upgradeId"]), wave + 1)
    state["decision"] = "await_continue" if state["strategy"] == "canary" and wave == 0 else "next"
    return state


def await_continue(event: State, *, runs: RunRepository) -> State:
    """Open the canary gate: keep the task token where /continue finds it."""
    if not runs.store_task_token(int(event["upgradeId"]), str(event["taskToken"]), int(event["wave"])):
        raise GateClosed(f"upgrade {event['upgradeId']} was halted or aborted; the gate stays closed")
    return {"waiting": True}


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
        runs.create_upgrade_rollback(upgrade_id, requested_by=parameters.get("abortedBy"), run_name=rollback_run)
        if runs.run_size(rollback_run):
            result["next"] = {"upgradeId": upgrade_id, "runName": rollback_run, "operation": "rollback",
                              "scope": "upgrade"}  # fmt: skip
    return result


# ------------------------------------------------------------------------------------------- child
def begin_customer(event: State, *, runs: RunRepository) -> State:
    """Claim the customer's row; 'done' when it is already final or the upgrade was halted."""
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
    }


def _spec(event: State, stage: str, revision: int | None = None) -> HelmJobSpec:
    customer = event["customer"]
    return HelmJobSpec(
        upgrade_id=int(event["upgradeId"]),
        log_id=int(event["logId"]),
        customer_id=customer["customerId"],
        component=customer["component"],
        namespace=customer["namespace"],
        release=customer["release"],
        operation=stage,  # type: ignore[arg-type]  # upgrade | rollback | recover
        version=customer["version"] if stage == "upgrade" else None,
        revision=revision,
        attempt=int(customer["attempt"]),
    )


def start_helm_job(event: State, *, runs: RunRepository, cluster: ClusterGateway) -> State:
    """Create the customer's Helm Job (or adopt it when a retry finds it already created).

    Before an upgrade: re-check the halt flag (Step Functions does not stop children already
    running when an upgrade halts) and pre-check the release: it must exist; a release stuck in
    pending-* with no Job of ours working on it is first recovered (rolled back to its last
    deployed revision), then upgraded.
    """
    customer = event["customer"]
    stage = event.get("stage") or customer["operation"]
    row, halt_reason = runs.halt_reason_for(int(event["logId"]))
    if stage != "upgrade":
        spec = _spec(event, "rollback")
        name = cluster.start_helm_job(spec)
        runs.record_job(spec.log_id, name)
        return {"jobName": name, "stage": "rollback", "phase": "pending"}

    spec = _spec(event, "upgrade")
    if row["job_name"] != cluster.job_name(spec):  # the upgrade Job does not exist yet
        if halt_reason:
            raise UpgradeHalted(f"not started: {halt_reason}")
        release = cluster.release_status(spec.namespace, spec.release)
        if not release.exists:
            raise ReleaseNotReady(f"Helm release '{spec.release}' not found in namespace '{spec.namespace}'")
        if release.stuck:
            return _recover(event, row, release, runs=runs, cluster=cluster)
    name = cluster.start_helm_job(spec)
    runs.record_job(spec.log_id, name)
    return {"jobName": name, "stage": "upgrade", "phase": "pending"}


def _recover(event: State, row: dict[str, Any], release: ReleaseInfo, *, runs: RunRepository,
             cluster: ClusterGateway) -> State:  # fmt: skip
    """A release left in pending-* by a helm client that died: roll it back, unless someone is on it."""
    if release.last_deployed_revision is None:
        raise ReleaseNotReady(
            f"Helm release '{release.release}' is {release.status} and has no deployed revision to recover to"
        )
    spec = _spec(event, "recover", release.last_deployed_revision)
    name = cluster.job_name(spec)
    busy = [job for job in cluster.active_jobs_for_release(release.namespace, release.release) if job != name]
    if busy:
        raise ReleaseBusy(
            f"Helm release '{release.release}' is {release.status} and helm Job(s) {', '.join(busy)} "
            "are still working on it; not touching it"
        )
    name = cluster.start_helm_job(spec)
    runs.record_job(
        spec.log_id,
        name,
        note=f"release was stuck in {release.status} (revision {release.revision}); recovering: "
        f"helm rollback to revision {release.last_deployed_revision} (Job {name})",
    )
    return {"jobName": name, "stage": "recover", "revision": release.last_deployed_revision, "phase": "pending"}


def check_helm_job(event: State, *, cluster: ClusterGateway) -> State:
    """Read the current Job of the customer; a finished recovery says 'recovered' (upgrade next)."""
    job = event["job"]
    stage = job.get("stage", "upgrade")
    state: JobState = cluster.get_helm_job(_spec(event, stage, job.get("revision")))
    result: State = {"jobName": state.name, "stage": stage, "phase": state.phase}
    if "revision" in job:
        result["revision"] = job["revision"]
    if state.finished or state.phase == "missing":
        result["output"] = state.output
        result["error"] = state.error
    if state.phase == "missing":
        result["phase"] = "failed"
        result["error"] = f"Job {state.name} disappeared before it finished"
    if stage == "recover" and result["phase"] == "succeeded":
        result["phase"] = "recovered"
    elif stage == "recover" and result["phase"] == "failed":
        result["error"] = f"could not recover the stuck release: {result['error']}"
    return result


def check_rollout(event: State, *, cluster: ClusterGateway, now: float | None = None) -> State:
    """After a successful helm upgrade: are the component's workloads rolled out (and healthy)?"""
    customer, check = event["customer"], event["customer"]["healthCheck"]
    now = time.time() if now is None else now
    deadline = float((event.get("health") or {}).get("deadline") or now + int(check.get("timeoutSeconds", 300)))
    rollout = cluster.rollout_status(customer["namespace"], customer["release"], customer["component"])
    detail = rollout.detail
    if rollout.phase == "failed":
        return {"phase": "unhealthy", "deadline": deadline, "detail": f"rollout failed: {detail}"}
    if rollout.phase == "ready":
        if not check.get("httpPath"):
            return {"phase": "healthy", "deadline": deadline, "detail": detail}
        service = check.get("service") or f"{customer['release']}-{customer['component']}"
        probe = cluster.http_health(customer["namespace"], service, str(check.get("port", "http")), check["httpPath"])
        if probe.healthy:
            return {"phase": "healthy", "deadline": deadline, "detail": f"{detail}; {probe.detail}"}
        detail = f"HTTP health check {check['httpPath']} failed: {probe.detail}"
    if now >= deadline:
        timeout = int(check.get("timeoutSeconds", 300))
        return {"phase": "unhealthy", "deadline": deadline, "detail": f"not healthy within {timeout} s: {detail}"}
    return {"phase": "waiting", "deadline": deadline, "detail": detail}


def finish_customer(event: State, *, runs: RunRepository) -> State:
    """Record the customer's outcome, counter and version in one transaction (once)."""
    failure = event.get("failure")
    job = event.get("job") or {}
    health = event.get("health") or {}
    customer = event.get("customer") or {}
    upgrade_job = event.get("upgradeJob")
    output = job.get("output")
    if failure:
        status = "skipped" if failure.get("Error") == "UpgradeHalted" else "failed"
        error = _failure_text(failure)
    elif upgrade_job is not None:  # an automatic rollback ran after a failed health check
        reason = health.get("detail") or upgrade_job.get("error") or "upgrade failed"
        output = "\n".join(filter(None, [upgrade_job.get("output"), "--- automatic rollback ---", job.get("output")]))
        if job.get("phase") == "succeeded":
            status, error = "rolled_back", f"{reason}; rolled back to the previous revision"
        else:
            status, error = "failed", f"{reason}; automatic rollback failed: {job.get('error')}"
    elif job.get("phase") == "succeeded" and health.get("phase") == "unhealthy":
        status, error = "failed", health.get("detail")
    elif job.get("phase") == "succeeded":
        status, error = "completed", None
    elif customer.get("autoRollback") and job.get("stage") == "upgrade":
        # helm --atomic already restored the previous revision: that is the rollback
        status, error = "rolled_back", f"{job.get('error')}; helm --atomic restored the previous revision"
    else:
        status, error = "failed", job.get("error") or "helm Job failed"
    changed, row = runs.finish_customer(int(event["logId"]), status, output, error)
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
