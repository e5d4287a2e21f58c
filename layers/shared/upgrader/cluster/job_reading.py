"""Reading the product's helm Jobs back: their phase, how long helm ran, its output (bounded) and what went
wrong with a pod that never ran.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from upgrader.cluster.job_spec import (
    CONTAINER_NAME,
    LABEL_LOG_ID,
    LABEL_MANAGED_BY,
    LABEL_RELEASE,
    LABEL_TARGET_NAMESPACE,
    MANAGED_BY,
    POD_JOB_NAME_LABELS,
    helm_job_name,
)
from upgrader.cluster.kube_calls import body_excerpt, label_selector, labels_match, translated_errors
from upgrader.cluster.types import ClusterConfig, HelmJobSpec, JobNotFoundError, JobState


def _is_finished(status: Any) -> tuple[bool, bool]:
    """(finished, succeeded) from a V1JobStatus: Complete/Failed conditions or the pod counters."""
    if status is None:
        return False, False
    for condition in status.conditions or []:
        if condition.status == "True" and condition.type == "Complete":
            return True, True
        if condition.status == "True" and condition.type == "Failed":
            return True, False
    if (status.succeeded or 0) > 0:
        return True, True
    if (status.failed or 0) > 0:  # backoffLimit is 0: one failed pod fails the Job
        return True, False
    return False, False


def _run_seconds(status: Any) -> float | None:
    """How long a finished Job ran, from its own status (startTime to completionTime); None if unknown."""
    started, completed = getattr(status, "start_time", None), getattr(status, "completion_time", None)
    if started is None or completed is None:
        return None
    return max(0.0, (completed - started).total_seconds())


def bound_output(text: str, max_bytes: int) -> str:
    """Keep the tail of `text` within `max_bytes` UTF-8 bytes, prefixed by a truncation note."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    budget = max_bytes - len(f"[truncated {len(data)} bytes]\n".encode())
    tail = data[len(data) - budget :].decode("utf-8", errors="ignore")  # drops a split character
    newline = tail.find("\n", 0, 512)
    if 0 <= newline < len(tail) - 1:  # start at a whole line when one begins close by
        tail = tail[newline + 1 :]
    dropped = len(data) - len(tail.encode("utf-8"))
    return f"[truncated {dropped} bytes]\n{tail}"


def _no_log(problem: str | None) -> str:
    """What a finished Job's record holds instead of an empty or unreadable helm output."""
    return f"[helm output unavailable: {problem}]" if problem else ""


def _helm_error_line(log: str) -> str | None:
    for line in reversed(log.splitlines()):
        if line.startswith("Error:"):
            return line.strip()
    return None


class JobReading:
    """The gateway's reads of its helm Jobs (and their pods' logs)."""

    _config: ClusterConfig
    _batch: k8s.BatchV1Api
    _core: k8s.CoreV1Api

    def get_helm_job(self, spec: HelmJobSpec) -> JobState:
        """The Job's phase; for a finished Job also the (bounded) helm output and the failure reason."""
        return self.get_helm_job_named(helm_job_name(spec))

    def get_helm_job_named(self, name: str) -> JobState:
        """`get_helm_job` by the Job's name (the reconciler knows names, not specs)."""
        namespace = self._config.job_namespace
        with translated_errors(f"read job {name}"):
            try:
                job: Any = self._batch.read_namespaced_job(name=name, namespace=namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return JobState(name=name, phase="missing")
                raise
        finished, succeeded = _is_finished(job.status)
        if not finished:
            started = job.status is not None and ((job.status.active or 0) > 0 or job.status.start_time)
            return JobState(name=name, phase="running" if started else "pending")

        log, pod_problem = self._read_job_log(name)
        output = bound_output(log or _no_log(pod_problem), self._max_bytes)
        if succeeded:  # the outcome is the Job's status; an unreadable log only says why it is missing
            return JobState(name=name, phase="succeeded", output=output, seconds=_run_seconds(job.status))
        reasons: list[str] = []
        for condition in job.status.conditions or []:
            if condition.type == "Failed" and condition.status == "True":
                reasons.append(": ".join(p for p in (condition.reason, condition.message) if p))
        if pod_problem:
            reasons.append(pod_problem)
        helm_error = _helm_error_line(log)
        if helm_error:
            reasons.append(helm_error)
        return JobState(
            name=name,
            phase="failed",
            output=output,
            error="; ".join(r for r in reasons if r) or "helm job failed",
        )

    def delete_helm_job(self, spec: HelmJobSpec, *, missing_ok: bool = True) -> None:
        """Delete the Job and its pod (abort). Raises JobNotFoundError only when `missing_ok` is False."""
        name = helm_job_name(spec)
        with translated_errors(f"delete job {name}"):
            try:
                self._batch.delete_namespaced_job(
                    name=name, namespace=self._config.job_namespace, propagation_policy="Background"
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                if not missing_ok:
                    raise JobNotFoundError(name) from exc

    def active_jobs_for_release(self, namespace: str, release: str) -> list[str]:
        """Names of our unfinished Jobs that target this release (any upgrade, any operation)."""
        wanted = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_TARGET_NAMESPACE: namespace, LABEL_RELEASE: release}
        with translated_errors(f"list jobs for {namespace}/{release}"):
            jobs: Any = self._batch.list_namespaced_job(
                namespace=self._config.job_namespace, label_selector=label_selector(wanted)
            )
        names = [
            job.metadata.name
            for job in jobs.items or []
            if labels_match(job.metadata.labels, wanted) and not _is_finished(job.status)[0]
        ]
        return sorted(names)

    def helm_jobs_of(self, log_id: int) -> dict[str, bool]:
        """Our Jobs of one log row (any operation, any attempt): name -> finished.

        A retried StartHelmJob uses it to adopt a Job its earlier attempt created but could not record.
        """
        wanted = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_LOG_ID: str(log_id)}
        with translated_errors(f"list jobs of log row {log_id}"):
            jobs: Any = self._batch.list_namespaced_job(
                namespace=self._config.job_namespace, label_selector=label_selector(wanted)
            )
        return {
            job.metadata.name: _is_finished(job.status)[0]
            for job in jobs.items or []
            if labels_match(job.metadata.labels, wanted)
        }

    @property
    def _max_bytes(self) -> int:
        return self._config.max_output_bytes

    def _read_job_log(self, job_name: str) -> tuple[str, str | None]:
        """(log text, pod termination summary) of the Job's newest pod; ("", note) when gone or unreadable.

        The log is best effort: the Job's status decides the outcome. A log the API server cannot give
        (400, 404, any 5xx) gives ("", why); not reaching the API server at all is transient (the
        release must be read too), and so are 401/429."""
        namespace = self._config.job_namespace
        with translated_errors(f"list pods of job {job_name}"):
            pods: Any = self._core.list_namespaced_pod(namespace=namespace, label_selector=f"job-name={job_name}")
        # Filter ourselves too: selectors are a server feature some fakes (and proxies) ignore.
        ours = [
            pod
            for pod in pods.items or []
            if any((pod.metadata.labels or {}).get(key) == job_name for key in POD_JOB_NAME_LABELS)
        ]
        if not ours:
            return "", "no pod found for the job (deleted or never scheduled)"
        pod = max(enumerate(ours), key=lambda p: (str(p[1].metadata.creation_timestamp or ""), p[0]))[1]
        problem = self._pod_problem(pod)
        with translated_errors(f"read log of pod {pod.metadata.name}"):
            try:
                log = self._core.read_namespaced_pod_log(
                    name=pod.metadata.name, namespace=namespace, container=CONTAINER_NAME
                )
            except ApiException as exc:
                # 400: container never started; 404: pod gone; 5xx: the API server could not reach the
                # node's kubelet (node gone, kubelet restarting, its port firewalled). Anything else is
                # about us (401 token, 429 rate: transient; 403 RBAC: permanent, a broken install).
                if exc.status not in (400, 404) and (exc.status or 0) < 500:
                    raise
                unavailable = f"pod log unavailable: HTTP {exc.status} {exc.reason}: {body_excerpt(exc.body)}"
                return "", "; ".join(p for p in (problem, unavailable) if p)
        return str(log or ""), problem

    @staticmethod
    def _pod_problem(pod: Any) -> str | None:
        status = pod.status
        if status is None:
            return None
        for container in status.container_statuses or []:
            terminated = container.state.terminated if container.state else None
            if terminated is not None and (terminated.exit_code or 0) != 0:
                reason = terminated.reason or "Error"
                return f"pod {pod.metadata.name}: {reason} (exit code {terminated.exit_code})"
        if status.reason:  # e.g. DeadlineExceeded, Evicted: the container may never have finished
            return f"pod {pod.metadata.name}: {status.reason}" + (f": {status.message}" if status.message else "")
        return None
