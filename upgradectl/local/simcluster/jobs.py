"""The Job controller (and kubelet) of the simulated cluster, for the helm Jobs our code creates.

A new Job gets status.startTime and one pod labelled ``job-name=<job>``, unless the Job controller has not started
it yet (``unstarted_when(manifest)`` True, asked on every tick: the Job keeps no status at all, no startTime, no
pod, as while kube-controller-manager is down or behind). The pod may sit Pending first (``pending_seconds``;
``pending_when(manifest)`` returning a waiting reason such as "ImagePullBackOff", or True for "ContainerCreating"),
then runs: its container's argv is played by a `HelmProcess`. When helm exits the Job completes (exit 0) or fails
(BackoffLimitExceeded; the Jobs have backoffLimit 0) and the pod keeps helm's output as its log.
``activeDeadlineSeconds`` (counted from startTime, times ``time_scale``) is enforced: the Job fails with
DeadlineExceeded and its pod is deleted, whatever helm was doing. Deleting a Job deletes its pod (the garbage
collector) and so kills helm. helm runs as the pod's service account (``serviceAccountName`` in the Job's
namespace): RBAC decides what it may read and write in the customer namespace.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from upgradectl.local.simcluster.argv import HelmCall, parse_helm_argv
from upgradectl.local.simcluster.charts import ChartCatalog
from upgradectl.local.simcluster.helm import Authorize, HelmProcess, Outcome
from upgradectl.local.simcluster.helm_run import HelmSettings
from upgradectl.local.simcluster.pod_status import container_status, pending_pod_status, pod_conditions
from upgradectl.local.simcluster.rbac import User, service_account_user
from upgradectl.local.simcluster.releases import ReleaseStore
from upgradectl.local.simcluster.store import ObjectStore
from upgradectl.local.simcluster.workloads import Workloads

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
CUSTOMER_ANNOTATION = "upgrades.example.com/customer-id"
CUSTOMER_LABEL = "upgrades.example.com/customer-id"
TARGET_NS_LABEL = "upgrades.example.com/target-namespace"
COMPONENT_LABEL = "upgrades.example.com/component"
UPGRADE_ID_LABEL = "upgrades.example.com/upgrade-id"

PendingRule = Callable[[dict[str, Any]], "str | bool | None"]
UnstartedRule = Callable[[dict[str, Any]], bool]


class JobSettings(HelmSettings, Protocol):
    pending_seconds: float
    pending_when: PendingRule | None
    unstarted_when: UnstartedRule | None
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
    """Plays the Job controller and the helm clients of the Jobs' pods. Runs on the API server's loop.

    Work per tick is proportional to the Jobs still running (new Jobs arrive through the store's
    change notification), never to every object of the cluster. It also keeps the accounting tests
    assert on: how many helm Jobs run at once, overall and per upgrade-id label, and the peaks.
    """

    def __init__(
        self,
        store: ObjectStore,
        settings: JobSettings,
        *,
        releases: ReleaseStore,
        workloads: Workloads,
        catalog: ChartCatalog,
        logs: dict[tuple[str, str], str],
        is_held: Callable[[JobRun], bool],
        decide: Callable[[dict[str, Any], set[str]], Outcome],
        authorize: Callable[[User, str, str, str, str, str], str | None],
        onboard: Callable[[str], None] | None = None,
    ) -> None:
        self._store, self._settings = store, settings
        self._releases, self._workloads, self._catalog = releases, workloads, catalog
        self._logs = logs
        self._is_held, self._decide, self._authorize, self._onboard = is_held, decide, authorize, onboard
        self.runs: dict[tuple[str, str], JobRun] = {}
        self._new: set[tuple[str, str]] = set()  # created, not begun yet
        self._active: dict[tuple[str, str], JobRun] = {}  # begun, not finished
        self.running = 0
        self.peak = 0
        self.running_by_upgrade: Counter[str] = Counter()
        self.peak_by_upgrade: dict[str, int] = {}
        self.last_pass = 0  # Jobs the last reconcile pass looked at (the running ones, not all)
        store.on_change(JOBS, self._job_changed)

    def _job_changed(self, event: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        meta = (new or old or {}).get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if event == "ADDED":
            self._new.add(key)
        elif event == "DELETED":  # the garbage collector deletes its pod, which kills helm
            self._new.discard(key)
            run = self.runs.pop(key, None)
            if run is not None:
                self._collect(run)

    def reconcile(self, now: float) -> None:
        """One pass over the new and the running Jobs (no scan of every object in the API)."""
        unstarted = self._settings.unstarted_when
        for key in sorted(self._new):
            job = self._store.get(JOBS, *key)
            if job is not None and unstarted is not None and unstarted(job):
                continue  # not picked up by the Job controller yet: no status, no pod
            self._new.discard(key)
            if job is not None:
                self._begin(key[0], key[1], job, now)
        active = sorted(self._active)
        self.last_pass = len(active)
        for key in active:
            run = self._active.get(key)
            if run is not None and not run.finished:
                self._advance(run, now)
        self._workloads.settle(now)

    # --- accounting ---------------------------------------------------------------------------------

    @staticmethod
    def _upgrade_of(run: JobRun) -> str:
        return str(((run.manifest.get("metadata") or {}).get("labels") or {}).get(UPGRADE_ID_LABEL, ""))

    def _started(self, run: JobRun) -> None:
        self._active[(run.namespace, run.name)] = run
        self.running += 1
        self.peak = max(self.peak, self.running)
        upgrade = self._upgrade_of(run)
        self.running_by_upgrade[upgrade] += 1
        self.peak_by_upgrade[upgrade] = max(self.peak_by_upgrade.get(upgrade, 0), self.running_by_upgrade[upgrade])

    def _stopped(self, run: JobRun) -> None:
        if self._active.pop((run.namespace, run.name), None) is None:
            return
        self.running -= 1
        self.running_by_upgrade[self._upgrade_of(run)] -= 1

    # --- lifecycle ----------------------------------------------------------------------------------

    def _begin(self, namespace: str, name: str, job: dict[str, Any], now: float) -> JobRun:
        uid = str((job.get("metadata") or {}).get("uid", ""))
        call = parse_helm_argv(_argv(job))
        run = JobRun(namespace, name, job, now, f"{name[:57]}-{uid[:5]}", uid, call)
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        if isinstance(deadline, int | float) and deadline > 0:
            run.deadline_at = now + deadline * self._settings.time_scale
        self.runs[(namespace, name)] = run
        self._started(run)
        stamp = now_iso()
        self._store.merge(JOBS, namespace, name, {"status": {"active": 1, "ready": 0, "startTime": stamp}})
        template = job.get("spec", {}).get("template", {})
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels.update({"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": uid,
                       "batch.kubernetes.io/controller-uid": uid})  # fmt: skip
        spec = template.get("spec") or {"containers": [{"name": "helm", "image": "helm"}]}
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": True,
                 "blockOwnerDeletion": True}  # fmt: skip
        self._store.put(PODS, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": run.pod_name, "namespace": namespace, "creationTimestamp": stamp, "labels": labels,
                         "ownerReferences": [owner]},
            "spec": spec,
            "status": {"phase": "Pending"},
        })  # fmt: skip
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

    def _runner(self, run: JobRun) -> User:
        """Who helm runs as: the pod's service account, in the Job's namespace."""
        pod_spec = ((run.manifest.get("spec") or {}).get("template") or {}).get("spec") or {}
        return service_account_user(run.namespace, str(pod_spec.get("serviceAccountName") or "default"))

    def _start(self, run: JobRun, now: float) -> None:
        """The pod runs: its container starts, and helm with it."""
        run.running_since = now
        stamp = now_iso()
        pod = self._pod(run)
        if pod is None:  # deleted through the API: the Job controller would make a new one; not simulated
            return
        containers = (pod.get("spec") or {}).get("containers") or [{"name": "helm"}]
        self._store.merge(PODS, run.namespace, run.pod_name, {"status": {
            "phase": "Running", "startTime": stamp, "conditions": pod_conditions(True, stamp),
            "containerStatuses": [container_status(c, {"running": {"startedAt": stamp}}, True) for c in containers],
        }})  # fmt: skip
        self._store.merge(JOBS, run.namespace, run.name, {"status": {"ready": 1}})
        if run.call is not None:
            labels = (run.manifest.get("metadata") or {}).get("labels") or {}
            runner = self._runner(run)

            def authorize(verb: str, group: str, resource: str, namespace: str, name: str = "") -> str | None:
                return self._authorize(runner, verb, group, resource, namespace, name)

            allowed: Authorize = authorize
            run.process = HelmProcess(
                run.call,
                store=self._releases,
                workloads=self._workloads,
                catalog=self._catalog,
                settings=self._settings,
                customer_keys=customer_keys(run.manifest, run.call),
                component=labels.get(COMPONENT_LABEL),
                decide=lambda: self._decide(run.manifest, customer_keys(run.manifest, run.call)),
                authorize=allowed,
                onboard=self._onboard,
            )
            run.process.start(now)

    def _write_pending_pod(self, run: JobRun, reason: str, stamp: str) -> None:
        pod = self._pod(run)
        if pod is None or run.waiting_reason == reason:
            return
        run.waiting_reason = reason
        containers = (pod.get("spec") or {}).get("containers") or [{"name": "helm"}]
        status = pending_pod_status(containers, reason, stamp)
        self._store.merge(PODS, run.namespace, run.pod_name, {"status": status})

    def _pod(self, run: JobRun) -> dict[str, Any] | None:
        """The Job's pod, or None when it is gone."""
        return self._store.get(PODS, run.namespace, run.pod_name)

    def _finish(self, run: JobRun, succeeded: bool, log: str) -> None:
        if self._settings.log_text is not None:
            log = self._settings.log_text(run.manifest, log)
        run.finished, run.outcome = True, "succeed" if succeeded else "fail"
        self._stopped(run)
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
        self._store.merge(JOBS, run.namespace, run.name, {"status": job_status})
        pod = self._pod(run)
        if pod is not None:
            containers = (pod.get("spec") or {}).get("containers") or [{"name": "helm"}]
            pod_patch["conditions"] = pod_conditions(False, stamp)
            pod_patch["containerStatuses"] = [
                container_status(c, {"terminated": dict(terminated)}, False) for c in containers
            ]
            self._store.merge(PODS, run.namespace, run.pod_name, {"status": pod_patch})
        self._logs[(run.namespace, run.pod_name)] = log

    def _kill(self, run: JobRun, *, deadline: bool) -> None:
        """activeDeadlineSeconds passed: the Job fails with DeadlineExceeded, its pod is deleted and
        helm dies where it stood (a release it was changing stays pending-*)."""
        if run.process is not None:
            run.process.kill()
        run.finished, run.outcome = True, "timeout"
        self._stopped(run)
        stamp = now_iso()
        message = "Job was active longer than specified deadline"
        self._store.merge(JOBS, run.namespace, run.name, {"status": {
            "active": None, "ready": 0, "failed": 1,
            "conditions": [_condition("FailureTarget", "DeadlineExceeded", message, stamp),
                           _condition("Failed", "DeadlineExceeded", message, stamp)],
        }})  # fmt: skip
        self._delete_pod(run)

    def _collect(self, run: JobRun) -> None:
        """The Job was deleted: the garbage collector deletes its pod, which kills helm."""
        if run.process is not None:
            run.process.kill()
        self._stopped(run)
        self._delete_pod(run)

    def _delete_pod(self, run: JobRun) -> None:
        if self._pod(run) is not None:
            self._store.delete(PODS, run.namespace, run.pod_name)
        self._logs.pop((run.namespace, run.pod_name), None)
