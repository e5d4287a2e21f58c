"""The state machine's steps as domain functions. Each is idempotent: delivered twice, it acts once.

Parent (one execution per run):  prepare_run -> [wave map] -> evaluate_wave -> await_continue? -> finalize_run
Child (one per customer):        begin_customer -> start_helm_job -> check_helm_job (loop) -> finish_customer
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Protocol

from upgrader.cluster.types import ClusterGateway, HelmJobSpec, JobState
from upgrader.errors import GateClosed, UpgradeHalted
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
    return {
        "upgradeId": upgrade_id,
        "runName": run_name,
        "operation": operation,
        "strategy": upgrade["strategy"] if operation == "upgrade" else "rollback",
        "totalWaves": len(ordered),
        "waveSizes": [len(items) for items in ordered],
        "wave": 0,
        "bucket": bucket,
        "manifestPrefix": prefix,
        "maxConcurrency": int(parameters.get("maxConcurrency", 10)),
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
    state.pop("mapError", None)
    wave = int(state["wave"])
    closed = runs.close_unfinished(state["runName"], wave, "the worker did not record a result for this customer")
    counts = runs.wave_counts(state["runName"], wave)
    failed = counts.get("failed", 0) + counts.get("rolled_back", 0)
    size = sum(counts.values())
    state["lastWave"] = {"wave": wave, "size": size, "completed": counts.get("completed", 0), "failed": failed,
                         "skipped": counts.get("skipped", 0), "unrecorded": closed}  # fmt: skip
    has_next = wave + 1 < int(state["totalWaves"])
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
    if event.get("operation") != "upgrade":
        runs.close_unfinished(str(event["runName"]), None, failure or "the run ended before this customer finished")
        return {"runName": event["runName"], "operation": event.get("operation"), "status": "finished"}
    runs.close_unfinished(str(event["runName"]), None, failure or "the run ended before this customer finished")
    upgrade = runs.finalize_upgrade(int(event["upgradeId"]), str(event["runName"]), failure)
    return {
        "upgradeId": upgrade["id"],
        "status": upgrade["status"],
        "completed": upgrade["completed_customers"],
        "failed": upgrade["failed_customers"],
        "haltReason": upgrade["halt_reason"],
    }


# ------------------------------------------------------------------------------------------- child
def begin_customer(event: State, *, runs: RunRepository) -> State:
    """Claim the customer's row; 'done' when it is already final or the upgrade was halted."""
    action, row = runs.claim_customer(int(event["logId"]))
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
    }


def _spec(event: State) -> HelmJobSpec:
    customer = event["customer"]
    operation = customer["operation"]
    return HelmJobSpec(
        upgrade_id=int(event["upgradeId"]),
        log_id=int(event["logId"]),
        customer_id=customer["customerId"],
        component=customer["component"],
        namespace=customer["namespace"],
        release=customer["release"],
        operation=operation,
        version=customer["version"] if operation == "upgrade" else None,
        attempt=int(customer["attempt"]),
    )


def start_helm_job(event: State, *, runs: RunRepository, cluster: ClusterGateway) -> State:
    """Create the customer's Helm Job (or adopt it when a retry finds it already created).

    Re-checks the halt flag right before helm: Step Functions does not stop children that are
    already running when the upgrade halts.
    """
    spec = _spec(event)
    row, halt_reason = runs.halt_reason_for(spec.log_id)
    if spec.operation == "upgrade" and halt_reason and not row["job_name"]:
        raise UpgradeHalted(f"not started: {halt_reason}")
    name = cluster.start_helm_job(spec)
    if row["job_name"] != name:
        runs.record_job(spec.log_id, name)
    return {"jobName": name, "phase": "pending"}


def check_helm_job(event: State, *, cluster: ClusterGateway) -> State:
    state: JobState = cluster.get_helm_job(_spec(event))
    result: State = {"jobName": state.name, "phase": state.phase}
    if state.finished or state.phase == "missing":
        result["output"] = state.output
        result["error"] = state.error
    if state.phase == "missing":
        result["phase"] = "failed"
        result["error"] = f"Job {state.name} disappeared before it finished"
    return result


def finish_customer(event: State, *, runs: RunRepository) -> State:
    """Record the customer's outcome, counter and version in one transaction (once)."""
    failure = event.get("failure")
    job = event.get("job") or {}
    if failure:
        error_name = failure.get("Error", "")
        status = "skipped" if error_name == "UpgradeHalted" else "failed"
        output, error = job.get("output"), _failure_text(failure)
    else:
        status = "completed" if job.get("phase") == "succeeded" else "failed"
        output, error = job.get("output"), job.get("error")
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
