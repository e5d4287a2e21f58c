"""The Job controller (and kubelet) of the simulated cluster, for the helm Jobs our code creates.

A new Job gets status.startTime and one pod labelled ``job-name=<job>``. The pod may sit Pending
first (``pending_seconds``; ``pending_when(manifest)`` returning a waiting reason such as
"ImagePullBackOff", or True for "ContainerCreating"), then runs: its container's argv is played by
a `HelmProcess`. When helm exits the Job completes (exit 0) or fails (BackoffLimitExceeded; the
Jobs have backoffLimit 0) and the pod keeps helm's output as its log. ``activeDeadlineSeconds``
(counted from startTime, times ``time_scale``) is enforced: the Job fails with DeadlineExceeded and
its pod is deleted, whatever helm was doing. Deleting a Job deletes its pod (the garbage collector)
and so kills helm.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from upgradectl.local.simcluster.argv import HelmCall, parse_helm_argv
from upgradectl.local.simcluster.charts import ChartCatalog
from upgradectl.local.simcluster.helm import HelmProcess, HelmSettings, Outcome
from upgradectl.local.simcluster.releases import ReleaseStore
from upgradectl.local.simcluster.workloads import DEPLOYMENTS, Workloads

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
CUSTOMER_ANNOTATION = "upgrades.example.com/customer-id"
CUSTOMER_LABEL = "upgrades.example.com/customer-id"
TARGET_NS_LABEL = "upgrades.example.com/target-namespace"
COMPONENT_LABEL = "upgrades.example.com/component"
PENDING_MESSAGES = {
    "ContainerCreating": None,
    "ImagePullBackOff": 'Back-off pulling image "{image}"',
    "ErrImagePull": 'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found',
}
UNSCHEDULABLE = (
    "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)

Emit = Callable[[str, dict[str, Any]], None]
PendingRule = Callable[[dict[str, Any]], "str | bool | None"]


class JobSettings(HelmSettings, Protocol):
    pending_seconds: float
    pending_when: PendingRule | None
    log_text: Callable[[dict[str, Any], str], str] | None


def now_iso() -> str:
    return dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class JobRun:
    namespace: str
    name: str
    manifest: dict[str, Any]
    created_at: float  # time.monotonic() of status.startTime
    pod_name: str
    uid: str
    call: HelmCall | None
    deadline_at: float | None = None
    running_since: float | None = None  # the pod left Pending
    waiting_reason: str | None = None  # why the pod is Pending, as last written
    process: HelmProcess | None = None
    finished: bool = False
    outcome: str | None = None  # "succeed" | "fail" | "timeout", once finished


def customer_keys(manifest: dict[str, Any], call: HelmCall | None) -> set[str]:
    """What names the Job's customer: its id (annotation, label) and its namespace."""
    meta = manifest.get("metadata", {})
    ids = {
        (meta.get("annotations") or {}).get(CUSTOMER_ANNOTATION),
        (meta.get("labels") or {}).get(CUSTOMER_LABEL),
        (meta.get("labels") or {}).get(TARGET_NS_LABEL),
        call.namespace if call else None,
    }
    return {i for i in ids if i}


def _argv(manifest: dict[str, Any]) -> list[str]:
    try:
        container = manifest["spec"]["template"]["spec"]["containers"][0]
    except (KeyError, IndexError, TypeError):
        return []
    return [str(a) for a in list(container.get("command") or []) + list(container.get("args") or [])]


def _condition(kind: str, reason: str, message: str, stamp: str) -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": stamp, "lastTransitionTime": stamp}  # fmt: skip


class JobController:
    """Plays the Job controller and the helm clients of the Jobs' pods. Call under the API lock."""

    def __init__(
        self,
        api: Any,
        settings: JobSettings,
        *,
        store: ReleaseStore,
        workloads: Workloads,
        catalog: ChartCatalog,
        logs: dict[tuple[str, str], str],
        emit: Emit,
        is_held: Callable[[JobRun], bool],
        decide: Callable[[dict[str, Any], set[str]], Outcome],
    ) -> None:
        self._api, self._settings = api, settings
        self._store, self._workloads, self._catalog = store, workloads, catalog
        self._logs, self._emit = logs, emit
        self._is_held, self._decide = is_held, decide
        self.runs: dict[tuple[str, str], JobRun] = {}
        self._candidates: set[tuple[str, str]] = set()  # Jobs created through the API, maybe not stored

    def created(self, namespace: str, name: str) -> None:
        """A Job create request arrived (the API server may still refuse it): look at it from now on."""
        self._candidates.add((namespace, name))

    def reconcile(self, now: float) -> None:
        """One pass of the controller over the Jobs it knows (no scan of every object in the API)."""
        for key in sorted(self._candidates | set(self.runs)):
            namespace, name = key
            try:
                obj = self._api.objects[JOBS, namespace, name]
            except KeyError:
                obj = None
            if obj is None or obj.deleted:
                self._candidates.discard(key)
                run = self.runs.pop(key, None)
                if run is not None:  # a deleted Job: the garbage collector deletes its pod
                    self._collect(run)
                continue
            run = self.runs.get(key)
            if run is None:
                run = self._begin(namespace, name, obj.raw, now)
            if not run.finished:
                self._advance(run, now)
        for raw in self._workloads.settle(now):
            self._emit(DEPLOYMENTS, {"type": "MODIFIED", "object": raw})

    # --- lifecycle ----------------------------------------------------------------------------------

    def _begin(self, namespace: str, name: str, manifest: dict[str, Any], now: float) -> JobRun:
        uid = str(uuid.uuid4())
        call = parse_helm_argv(_argv(manifest))
        run = JobRun(namespace, name, manifest, now, f"{name[:57]}-{uid[:5]}", uid, call)
        deadline = (manifest.get("spec") or {}).get("activeDeadlineSeconds")
        if isinstance(deadline, int | float) and deadline > 0:
            run.deadline_at = now + deadline * self._settings.time_scale
        self.runs[(namespace, name)] = run
        stamp = now_iso()
        job = self._api.objects[JOBS, namespace, name]
        job.patch({"metadata": {"uid": uid, "creationTimestamp": stamp, "resourceVersion": "1"},
                   "status": {"active": 1, "ready": 0, "startTime": stamp}})  # fmt: skip
        self._emit(JOBS, {"type": "MODIFIED", "object": job.raw})
        template = manifest.get("spec", {}).get("template", {})
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels.update({"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": uid})
        spec = template.get("spec") or {"containers": [{"name": "helm", "image": "helm"}]}
        self._api.objects[PODS, namespace, run.pod_name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": run.pod_name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": stamp,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],  # fmt: skip
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        self._emit(PODS, {"type": "ADDED", "object": self._api.objects[PODS, namespace, run.pod_name].raw})
        self._logs[(namespace, run.pod_name)] = ""
        pending = self._pending_reason(run, now)
        if pending is not None:
            self._write_pending_pod(run, pending, stamp)
        else:
            self._start(run, now)
        return run

    def _advance(self, run: JobRun, now: float) -> None:
        if run.deadline_at is not None and now >= run.deadline_at:
            self._kill(run, deadline=True)
            return
        if run.running_since is None:
            pending = self._pending_reason(run, now)
            if pending is not None:
                self._write_pending_pod(run, pending, now_iso())
                return
            self._start(run, now)
        held = self._is_held(run)
        if run.process is None:  # not a helm upgrade/rollback: runs for job_duration, then the outcome
            assert run.running_since is not None
            if held or now - run.running_since < self._settings.job_duration_seconds:
                return
            outcome = self._decide(run.manifest, customer_keys(run.manifest, None))
            if outcome == "timeout":
                self._kill(run, deadline=True)
            else:
                self._finish(run, outcome == "succeed", "simulated pod: not a helm upgrade/rollback command\n")
            return
        step = run.process.step(now, held)
        if step == "killed":
            self._kill(run, deadline=True)
        elif step == "exited":
            self._finish(run, run.process.exit_code == 0, run.process.output)

    def _pending_reason(self, run: JobRun, now: float) -> str | None:
        rule = self._settings.pending_when
        chosen = rule(run.manifest) if rule is not None else None
        if chosen:
            return chosen if isinstance(chosen, str) else "ContainerCreating"
        if now - run.created_at < self._settings.pending_seconds:
            return "ContainerCreating"
        return None

    def _start(self, run: JobRun, now: float) -> None:
        """The pod runs: its container starts, and helm with it."""
        run.running_since = now
        stamp = now_iso()
        pod = self._pod(run)
        if pod is None:  # deleted through the API: the Job controller would make a new one; not simulated
            return
        containers = (pod.raw.get("spec") or {}).get("containers") or [{"name": "helm"}]
        pod.patch({"status": {
            "phase": "Running", "startTime": stamp, "conditions": self._pod_conditions(True, stamp),
            "containerStatuses": [self._container(c, {"running": {"startedAt": stamp}}, True) for c in containers],
        }})  # fmt: skip
        self._emit(PODS, {"type": "MODIFIED", "object": pod.raw})
        job = self._api.objects[JOBS, run.namespace, run.name]
        job.patch({"status": {"ready": 1}})
        self._emit(JOBS, {"type": "MODIFIED", "object": job.raw})
        if run.call is not None:
            labels = (run.manifest.get("metadata") or {}).get("labels") or {}
            run.process = HelmProcess(
                run.call,
                store=self._store,
                workloads=self._workloads,
                catalog=self._catalog,
                settings=self._settings,
                customer_keys=customer_keys(run.manifest, run.call),
                component=labels.get(COMPONENT_LABEL),
                decide=lambda: self._decide(run.manifest, customer_keys(run.manifest, run.call)),
                emit_workload=lambda raw: self._emit(DEPLOYMENTS, {"type": "MODIFIED", "object": raw}),
            )
            run.process.start(now)

    def _write_pending_pod(self, run: JobRun, reason: str, stamp: str) -> None:
        pod = self._pod(run)
        if pod is None or run.waiting_reason == reason:
            return
        run.waiting_reason = reason
        containers = (pod.raw.get("spec") or {}).get("containers") or [{"name": "helm"}]
        if reason == "Unschedulable":
            status: dict[str, Any] = {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE,
                 "lastProbeTime": None, "lastTransitionTime": stamp}]}  # fmt: skip
        else:
            template = PENDING_MESSAGES.get(reason)
            waiting: dict[str, Any] = {"reason": reason}
            statuses = []
            for container in containers:
                if template:
                    waiting = {"reason": reason, "message": template.format(image=container.get("image", ""))}
                statuses.append(self._container(container, {"waiting": dict(waiting)}, False))
            status = {"phase": "Pending", "startTime": stamp, "conditions": self._pod_conditions(False, stamp),
                      "containerStatuses": statuses}  # fmt: skip
        pod.patch({"status": status})
        self._emit(PODS, {"type": "MODIFIED", "object": pod.raw})

    @staticmethod
    def _pod_conditions(ready: bool, stamp: str) -> list[dict[str, Any]]:
        state = "True" if ready else "False"
        unready = {} if ready else {"reason": "ContainersNotReady", "message": "containers with unready status: [helm]"}
        return [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": state, "lastProbeTime": None, "lastTransitionTime": stamp, **unready},
            {"type": "Ready", "status": state, "lastProbeTime": None, "lastTransitionTime": stamp, **unready},
        ]

    @staticmethod
    def _container(container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {"name": container.get("name", "helm"), "image": container.get("image", ""), "imageID": "",
                "ready": ready, "restartCount": 0, "started": ready, "state": state}  # fmt: skip

    def _pod(self, run: JobRun) -> Any:
        """The Job's pod object, or None when it is gone."""
        # NB: `key in kmock.objects` only matches pre-parsed resource keys; indexing parses strings.
        try:
            pod = self._api.objects[PODS, run.namespace, run.pod_name]
        except KeyError:
            return None
        return None if pod.deleted else pod

    def _finish(self, run: JobRun, succeeded: bool, log: str) -> None:
        if self._settings.log_text is not None:
            log = self._settings.log_text(run.manifest, log)
        run.finished, run.outcome = True, "succeed" if succeeded else "fail"
        stamp = now_iso()
        if succeeded:
            message = "Reached expected number of succeeded pods"
            job_status: dict[str, Any] = {
                "active": None, "ready": 0, "succeeded": 1, "completionTime": stamp,
                "conditions": [_condition("SuccessCriteriaMet", "CompletionsReached", message, stamp),
                               _condition("Complete", "CompletionsReached", message, stamp)],
            }  # fmt: skip
            terminated = {"exitCode": 0, "reason": "Completed", "finishedAt": stamp}
            pod_patch: dict[str, Any] = {"phase": "Succeeded"}
        else:
            message = "Job has reached the specified backoff limit"
            job_status = {
                "active": None, "ready": 0, "failed": 1,
                "conditions": [_condition("FailureTarget", "BackoffLimitExceeded", message, stamp),
                               _condition("Failed", "BackoffLimitExceeded", message, stamp)],
            }  # fmt: skip
            terminated = {"exitCode": 1, "reason": "Error", "finishedAt": stamp}
            pod_patch = {"phase": "Failed"}
        job = self._api.objects[JOBS, run.namespace, run.name]
        job.patch({"status": job_status})
        self._emit(JOBS, {"type": "MODIFIED", "object": job.raw})
        pod = self._pod(run)
        if pod is not None:
            containers = (pod.raw.get("spec") or {}).get("containers") or [{"name": "helm"}]
            pod_patch["conditions"] = self._pod_conditions(False, stamp)
            pod_patch["containerStatuses"] = [
                self._container(c, {"terminated": dict(terminated)}, False) for c in containers
            ]
            pod.patch({"status": pod_patch})
            self._emit(PODS, {"type": "MODIFIED", "object": pod.raw})
        self._logs[(run.namespace, run.pod_name)] = log

    def _kill(self, run: JobRun, *, deadline: bool) -> None:
        """activeDeadlineSeconds passed: the Job fails with DeadlineExceeded, its pod is deleted and
        helm dies where it stood (a release it was changing stays pending-*)."""
        if run.process is not None:
            run.process.kill()
        run.finished, run.outcome = True, "timeout"
        stamp = now_iso()
        message = "Job was active longer than specified deadline"
        job = self._api.objects[JOBS, run.namespace, run.name]
        job.patch({"status": {
            "active": None, "ready": 0, "failed": 1,
            "conditions": [_condition("FailureTarget", "DeadlineExceeded", message, stamp),
                           _condition("Failed", "DeadlineExceeded", message, stamp)],
        }})  # fmt: skip
        self._emit(JOBS, {"type": "MODIFIED", "object": job.raw})
        self._delete_pod(run)

    def _collect(self, run: JobRun) -> None:
        """The Job was deleted: the garbage collector deletes its pod, which kills helm."""
        if run.process is not None:
            run.process.kill()
        self._delete_pod(run)

    def _delete_pod(self, run: JobRun) -> None:
        pod = self._pod(run)
        if pod is not None:
            raw = dict(pod.raw)
            pod.delete()
            self._emit(PODS, {"type": "DELETED", "object": raw})
        self._logs.pop((run.namespace, run.pod_name), None)
