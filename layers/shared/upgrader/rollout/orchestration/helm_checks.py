"""Looking at a customer's helm Job and then at its workloads: check_helm_job (loop) -> check_rollout (loop)."""

from __future__ import annotations

import time

from upgrader.cluster.types import (
    ClusterGateway,
    ClusterTransientError,
    HttpHealth,
    JobState,
    RolloutState,
)
from upgrader.infra.redaction import Redactor
from upgrader.rollout.helm_output import HelmOutputStore, header_for
from upgrader.rollout.orchestration.state import (
    CarriedLog,
    State,
    event_row,
    outage_since,
    row_spec,
)


def check_helm_job(event: State, *, cluster: ClusterGateway, outputs: HelmOutputStore) -> State:
    """Look at the customer's current Job; once it has ended, read what the release holds now.

    upgrade/restore Job failed and the release left pending-* (killed by its deadline mid-operation):
    "stuck", so a recovery runs before any result is recorded. A finished pre-check recovery says
    "recovered" (the upgrade comes next).

    A finished Job's output is redacted with the release's secrets (`upgrader.infra.redaction`) and written to
    the database here (`outputs`); the result carries none of it, only the redacted error.
    """
    job = event["job"]
    stage = str(job.get("stage", "upgrade"))
    row = event_row(event)
    if job.get("jobName") is None:  # nothing was started (see restore): the result is already known
        return dict(job)
    try:
        return _check_helm_job(event, job, stage, row, cluster, outputs)
    except ClusterTransientError as exc:  # the Job runs on; look again until the API answers
        since = outage_since(job, exc)
        unreachable: State = {"jobName": job["jobName"], "stage": stage, "phase": "unreachable",
                              "unreachableSince": since, "error": f"Kubernetes API unreachable: {exc}"}  # fmt: skip
        return _carried(job, unreachable)


def _check_helm_job(event: State, job: State, stage: str, row: CarriedLog, cluster: ClusterGateway,
                    outputs: HelmOutputStore) -> State:  # fmt: skip
    state: JobState = cluster.get_helm_job(row_spec(row, stage, revision=job.get("revision")))  # type: ignore[arg-type]
    result = _carried(job, {"jobName": state.name, "stage": stage, "phase": state.phase})
    if not (state.finished or state.phase == "missing"):
        return result
    release = cluster.release_status(row.namespace, row.release_name)
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
    """The verdict on every component the operation changed (a release train: each of its components, named
    in the detail; the first that is not healthy decides)."""
    deadline = float((event.get("health") or {}).get("deadline") or now + int(check.get("timeoutSeconds", 300)))
    components = list(customer.get("components") or [customer["component"]])
    details: list[str] = []
    for component in components:
        phase, detail = _component_verdict(customer, component, check, slot, cluster)
        named = f"{component}: {detail}" if len(components) > 1 else detail
        if phase == "failed":
            return {"phase": "unhealthy", "deadline": deadline, "detail": f"rollout failed: {named}"}
        if phase != "healthy":
            break
        details.append(named)
    else:
        return {"phase": "healthy", "deadline": deadline, "detail": "; ".join(details)}
    if now >= deadline:
        timeout = int(check.get("timeoutSeconds", 300))
        return {"phase": "unhealthy", "deadline": deadline, "detail": f"not healthy within {timeout} s: {named}"}
    return {"phase": "waiting", "deadline": deadline, "detail": named}


def _component_verdict(customer: State, component: str, check: State, slot: str | None,
                       cluster: ClusterGateway) -> tuple[str, str]:  # fmt: skip
    """One component's workloads: ("failed" | "waiting" | "healthy", the detail)."""
    try:
        rollout = cluster.rollout_status(customer["namespace"], customer["release"], component, slot)
    except ClusterTransientError as exc:  # not a verdict on the workloads: wait, up to the check's deadline
        rollout = RolloutState("progressing", f"Kubernetes API unreachable: {exc}")
    if rollout.phase == "failed":
        return "failed", rollout.detail
    if rollout.phase != "ready":
        return "waiting", rollout.detail
    if not check.get("httpPath"):
        return "healthy", rollout.detail
    service = check.get("service") or f"{customer['release']}-{component}"
    if slot is not None:  # the slot's preview Service: the component's own one still selects the active slot
        service = f"{customer['release']}-{component}-{slot}"
    try:
        probe = cluster.http_health(customer["namespace"], service, str(check.get("port", "http")), check["httpPath"])
    except ClusterTransientError as exc:
        probe = HttpHealth(False, None, f"Kubernetes API unreachable: {exc}")
    if probe.healthy:
        return "healthy", f"{rollout.detail}; {probe.detail}"
    return "waiting", f"HTTP health check {check['httpPath']} failed: {probe.detail}"
