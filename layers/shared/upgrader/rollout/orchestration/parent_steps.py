"""The parent's steps (one execution per run): prepare_run -> for each wave: [prepare_wave (a slice: the
customers that may start now) -> wave map | window wait -> evaluate_wave] -> gate? -> finalize_run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from upgrader.analysis.repository import AnalysisRepository
from upgrader.contract.strategies import gate_after
from upgrader.infra.errors import GateClosed
from upgrader.rollout.analysis_gate import failed_analysis
from upgrader.rollout.failure_budget import WaveBudget
from upgrader.rollout.orchestration.state import (
    ManifestStore,
    State,
    failure_text,
    wave_number,
)
from upgrader.rollout.run_repository import RunRepository
from upgrader.rollout.windows import (
    DEFAULT_RECHECK_SECONDS,
    WindowRepository,
    stamp,
    wait_seconds,
)

# (upgrade id, run name, wave number) -> what the re-check of the wave's pinned image tags found
ImageRecheck = Callable[[int, str, int], dict[str, Any]]


def prepare_run(event: State, *, runs: RunRepository) -> State:
    """Mark the run started; plan its waves (the wave numbers its rows carry, in order)."""
    upgrade_id, run_name, operation = int(event["upgradeId"]), str(event["runName"]), str(event["operation"])
    upgrade, rows = runs.start_run(upgrade_id, run_name, operation)
    sizes: dict[int, int] = defaultdict(int)
    for row in rows:
        sizes[row.wave] += 1
    waves = sorted(sizes)
    parameters = upgrade.parameters or {}
    request = event.get("request") or {}
    return {
        "upgradeId": upgrade_id,
        "runName": run_name,
        "operation": operation,
        "scope": request.get("scope", "upgrade" if operation == "upgrade" else "customer"),
        "strategy": upgrade.strategy if operation == "upgrade" else "rollback",
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
        "analysis": parameters.get("analysis") if operation == "upgrade" else None,  # rollout.analysis_gate's checks
    }


def prepare_wave(
    event: State, *, runs: RunRepository, s3: ManifestStore, bucket: str, windows: WindowRepository | None = None,
    now: datetime | None = None, recheck: int = DEFAULT_RECHECK_SECONDS, images: ImageRecheck | None = None,
) -> State:  # fmt: skip
    """Write the S3 manifest of the wave's next slice (the Distributed Map's items), right before it
    runs: a wave that follows a long canary gate still finds its manifest, whatever the bucket's
    expiry. Idempotent (the same rows, the same key).

    Without maintenance windows a wave is one slice: all its customers. With them, the slice holds only
    the customers that may start now; those whose window is closed stay pending until their next
    opening (`windowWaits` of them; the run waits `windowWaitSeconds` for the earliest, `nextOpening`,
    when nobody is ready) and get no child execution, so they hold no concurrency slot
    (`upgrader.rollout.windows`). `slice` is the slice's number in its wave (0: the first, which offers every
    customer of the wave; later ones only those that waited).

    Before an upgrade's wave (its first slice), `images` resolves the tags its customers were pinned for again
    (`upgrader.rollout.image_recheck`): a moved tag is recorded and reported (`imageRecheck`), never followed."""
    state = dict(event)
    number, run_name = wave_number(state), str(state["runName"])
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
        items = [{"logId": row.id, "customerId": row.customer_id} for row in runs.wave_rows(run_name, number)]
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
        if images is not None:
            state["imageRecheck"] = images(int(state["upgradeId"]), run_name, number)
        runs.set_current_wave(int(state["upgradeId"]), number)
    return state


def wave_budget(state: State, size: int, failed: int) -> WaveBudget:
    """The failure budget of the state's current wave."""
    return WaveBudget(state["strategy"], wave_number(state), size, failed, state.get("failureThreshold"))


def evaluate_wave(event: State, *, runs: RunRepository, windows: WindowRepository | None = None) -> State:
    """Decide what follows a slice of a wave: the wave's next slice (customers of it still wait for their
    maintenance window), the next wave, the canary gate (or a progressive step's manual gate), or the
    end (done or halted). The failure budget is judged after every slice, over the whole wave."""
    state = dict(event)
    map_error = failure_text(state.pop("mapError", None))
    position, number, run_name = int(state["wave"]), wave_number(state), str(state["runName"])
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
        budget = wave_budget(state, size, failed)
        if budget.exceeded:
            runs.halt(upgrade_id, budget.reason(total))
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
    # The bake (the state machine's, when bakeSeconds is set) follows a "next"; a rollback run has no gate.
    gate = state["operation"] == "upgrade" and gate_after(
        state["strategy"], number, last=False, step_gate=state.get("stepGate"), bake_seconds=0
    )
    state["decision"] = "await_continue" if gate == "approval" else "next"
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


def finalize_run(event: State, *, runs: RunRepository, analysis: AnalysisRepository) -> State:
    """Close the run: leftover rows, final status, completed_at. Safe to run twice (the rollback it starts is
    recorded once: its rows and its run are keyed by the run's name)."""
    failure = failure_text(event.get("failure"))
    upgrade_id, run_name = int(event["upgradeId"]), str(event["runName"])
    runs.close_unfinished(run_name, None, failure or "the run ended before this customer finished")
    if event.get("operation") != "upgrade":
        whole = event.get("scope") == "upgrade"
        counts = runs.finalize_rollback(upgrade_id, run_name, whole_upgrade=whole)
        return {"upgradeId": upgrade_id, "runName": run_name, "operation": "rollback", **counts, "next": None}
    upgrade = runs.finalize_upgrade(upgrade_id, run_name, failure)
    result: State = {
        "upgradeId": upgrade.id,
        "status": upgrade.status,
        "completed": upgrade.completed_customers,
        "failed": upgrade.failed_customers,
        "haltReason": upgrade.halt_reason,
        "next": None,  # the state machine's IsRollbackRequested choice reads it
    }
    parameters = upgrade.parameters or {}
    # Halted by the analysis gate with autoRollback: the failed wave's customers are rolled back (the waves that
    # passed keep the new version) in the same execution; the upgrade stays halted.
    analysis_rollback = failed_analysis(upgrade.halt_reason) and bool(parameters.get("autoRollback"))
    failed_wave = analysis.failed_wave(upgrade_id) if analysis_rollback else None
    if (upgrade.status == "aborted" and parameters.get("abortRollback")) or failed_wave is not None:
        # Aborted with rollback: the same execution goes on to roll back what it changed.
        rollback_run = f"{run_name}-rollback"
        by = "analysis" if failed_wave is not None else parameters.get("abortedBy")
        runs.create_abort_rollback(upgrade_id, requested_by=by, run_name=rollback_run, wave=failed_wave)
        if runs.run_size(rollback_run):
            result["next"] = {"upgradeId": upgrade_id, "runName": rollback_run, "operation": "rollback",
                              "scope": "upgrade" if failed_wave is None else "wave"}  # fmt: skip
    return result
