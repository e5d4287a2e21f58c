"""Kubernetes adapter of the cluster port: Helm runs as a Job, Helm's state is read from its Secrets.

Every call is safe to repeat (Step Functions may run a Task twice): the Job name is deterministic, a
second create answers 409 and the existing Job is adopted.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from upgrader.cluster.types import (
    ClusterConfig,
    ClusterPermanentError,
    ClusterTransientError,
    HelmJobSpec,
    JobNotFoundError,
    JobState,
    ReleaseInfo,
)

MANAGED_BY = "customer-upgrades"
LABEL_PREFIX = "upgrades.example.com"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_UPGRADE_ID = f"{LABEL_PREFIX}/upgrade-id"
LABEL_LOG_ID = f"{LABEL_PREFIX}/log-id"
LABEL_CUSTOMER_ID = f"{LABEL_PREFIX}/customer-id"
LABEL_COMPONENT = f"{LABEL_PREFIX}/component"
LABEL_OPERATION = f"{LABEL_PREFIX}/operation"
LABEL_ATTEMPT = f"{LABEL_PREFIX}/attempt"
LABEL_RELEASE = f"{LABEL_PREFIX}/release"
LABEL_TARGET_NAMESPACE = f"{LABEL_PREFIX}/target-namespace"
# Raw values that labels cannot carry (any customer id, the version) travel as annotations.
ANNOTATION_CUSTOMER_ID = f"{LABEL_PREFIX}/customer-id"
ANNOTATION_VERSION = f"{LABEL_PREFIX}/version"
ANNOTATION_REVISION = f"{LABEL_PREFIX}/revision"

CONTAINER_NAME = "helm"
HELM_HOME = "/helm"
# The Job controller labels its pods with both keys (the short one is the legacy form).
POD_JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
# Time the Job gets beyond helm's own --timeout (image pull, chart pull, atomic rollback).
DEADLINE_MARGIN_SECONDS = 120
RUNNER_UID = 65532

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_VALUES_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_CHART_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")


def _digest(raw: str, length: int = 8) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:length]


def _slug(raw: str, max_len: int) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", raw.lower().replace("_", "-"))
    slug = re.sub(r"-{2,}", "-", slug).strip("-")
    return slug[: max(max_len, 0)].strip("-")


def customer_label(customer_id: str) -> str:
    """The customer id as a label value: itself when label-safe, else a slug plus a hash of the raw id."""
    if len(customer_id) <= 63 and _LABEL_VALUE.match(customer_id):
        return customer_id
    digest = _digest(customer_id)
    slug = _slug(customer_id, 63 - len(digest) - 1)
    return f"{slug}-{digest}" if slug else digest


def helm_job_name(spec: HelmJobSpec) -> str:
    """Deterministic DNS-1123 label (<= 63 chars) per (upgrade, customer, operation, attempt).

    The hash of the raw customer id keeps two ids apart even when their slugs are equal
    ("Cust_1" and "cust-1").
    """
    prefix = f"helm-{spec.operation}-{spec.upgrade_id}-"
    suffix = f"-{_digest(spec.customer_id)}-a{spec.attempt}"
    slug = _slug(spec.customer_id, 63 - len(prefix) - len(suffix))
    name = f"{prefix}{slug}{suffix}" if slug else f"{prefix}{suffix[1:]}"
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise ClusterPermanentError(f"cannot build a valid Job name from {spec!r}")
    return name


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


def _helm_error_line(log: str) -> str | None:
    for line in reversed(log.splitlines()):
        if line.startswith("Error:"):
            return line.strip()
    return None


@contextlib.contextmanager
def _translated_errors(action: str) -> Iterator[None]:
    """Map client failures to the two named errors the state machine retries or catches."""
    try:
        yield
    except ApiException as exc:
        status = exc.status or 0
        if status in (401, 408, 429) or status >= 500 or status == 0:
            # 401: an EKS token expired between mint and use; the next attempt mints a new one.
            raise ClusterTransientError(f"{action}: HTTP {status} {exc.reason}") from exc
        raise ClusterPermanentError(f"{action}: HTTP {status} {exc.reason}: {_short_body(exc)}") from exc
    except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
        raise ClusterTransientError(f"{action}: {type(exc).__name__}: {exc}") from exc


def _short_body(exc: ApiException, limit: int = 500) -> str:
    return (exc.body or "")[:limit]


def _matches(labels: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


def _selector(wanted: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in wanted.items())


class KubernetesClusterGateway:
    """Runs helm as Kubernetes Jobs and reads Helm release state, with the official client."""

    def __init__(self, api_client: k8s.ApiClient, config: ClusterConfig) -> None:
        self._config = config
        self._batch = k8s.BatchV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)

    @property
    def config(self) -> ClusterConfig:
        return self._config

    def job_name(self, spec: HelmJobSpec) -> str:
        return helm_job_name(spec)

    # --- the Job manifest (pure) ---------------------------------------------------------------

    def helm_argv(self, spec: HelmJobSpec) -> list[str]:
        """The helm command line, as an argv list (no shell ever sees it)."""
        self._validate(spec)
        timeout = f"{self._config.helm_timeout_seconds}s"
        if spec.operation == "upgrade":
            chart = self._config.chart_refs[spec.component]
            tag_key = self._config.image_tag_keys[spec.component]
            return [
                "helm", "upgrade", spec.release, chart,
                "--namespace", spec.namespace,
                "--reuse-values",
                "--set-string", f"{tag_key}={spec.version}",
                "--wait", "--atomic",
                "--timeout", timeout,
            ]  # fmt: skip
        # rollback, and recover (a release stuck in pending-*): back to the given revision.
        revision = [str(spec.revision)] if spec.revision else []
        return ["helm", "rollback", spec.release, *revision, "--namespace", spec.namespace,
                "--wait", "--timeout", timeout]  # fmt: skip

    def job_labels(self, spec: HelmJobSpec) -> dict[str, str]:
        return {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_UPGRADE_ID: str(spec.upgrade_id),
            LABEL_LOG_ID: str(spec.log_id),
            LABEL_CUSTOMER_ID: customer_label(spec.customer_id),
            LABEL_COMPONENT: spec.component,
            LABEL_OPERATION: spec.operation,
            LABEL_ATTEMPT: str(spec.attempt),
            LABEL_RELEASE: spec.release,
            LABEL_TARGET_NAMESPACE: spec.namespace,
        }

    def build_job_manifest(self, spec: HelmJobSpec) -> dict[str, Any]:
        """The Job as a plain dict (what is POSTed). Raises ClusterPermanentError on an invalid spec."""
        argv = self.helm_argv(spec)
        name = self.job_name(spec)
        labels = self.job_labels(spec)
        annotations = {ANNOTATION_CUSTOMER_ID: spec.customer_id}
        if spec.version is not None:
            annotations[ANNOTATION_VERSION] = spec.version
        if spec.revision is not None:
            annotations[ANNOTATION_REVISION] = str(spec.revision)
        helm_env = [
            {"name": "HOME", "value": HELM_HOME},
            {"name": "HELM_CACHE_HOME", "value": f"{HELM_HOME}/cache"},
            {"name": "HELM_CONFIG_HOME", "value": f"{HELM_HOME}/config"},
            {"name": "HELM_DATA_HOME", "value": f"{HELM_HOME}/data"},
            {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - an emptyDir of the pod, not the host
        ]
        container = {
            "name": CONTAINER_NAME,
            "image": self._config.helm_image,
            "imagePullPolicy": "IfNotPresent",
            "command": argv[:1],
            "args": argv[1:],
            "env": helm_env,
            "volumeMounts": [
                {"name": "helm-home", "mountPath": HELM_HOME},
                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            ],
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
                "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "512Mi"},
            },
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUNNER_UID,
                "runAsGroup": RUNNER_UID,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "privileged": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": self._config.job_namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": {
                "backoffLimit": 0,  # a failed helm run is reported, never retried blindly by Kubernetes
                "activeDeadlineSeconds": self._config.helm_timeout_seconds + DEADLINE_MARGIN_SECONDS,
                "ttlSecondsAfterFinished": self._config.ttl_seconds_after_finished,
                "template": {
                    "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": self._config.service_account,
                        "automountServiceAccountToken": True,  # helm talks to the API as upgrade-runner
                        "enableServiceLinks": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": RUNNER_UID,
                            "runAsGroup": RUNNER_UID,
                            "fsGroup": RUNNER_UID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [
                            {"name": "helm-home", "emptyDir": {"sizeLimit": "256Mi"}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                        ],
                    },
                },
            },
        }

    def _validate(self, spec: HelmJobSpec) -> None:
        problems: list[str] = []
        if spec.operation not in ("upgrade", "rollback", "recover"):
            problems.append(f"unknown operation {spec.operation!r}")
        if len(spec.release) > 53 or not _DNS_LABEL.match(spec.release):
            problems.append(f"invalid release name {spec.release!r}")
        if len(spec.namespace) > 63 or not _DNS_LABEL.match(spec.namespace):
            problems.append(f"invalid namespace {spec.namespace!r}")
        if not spec.customer_id:
            problems.append("empty customer id")
        if spec.attempt < 1 or spec.upgrade_id < 0:
            problems.append("attempt must be >= 1 and upgrade id >= 0")
        if spec.operation == "upgrade":
            if spec.version is None or not _OCI_TAG.match(spec.version):
                problems.append(f"invalid version {spec.version!r}")
            chart = self._config.chart_refs.get(spec.component)
            tag_key = self._config.image_tag_keys.get(spec.component)
            if not chart or not _CHART_REF.match(chart):
                problems.append(f"no valid chart reference for component {spec.component!r}")
            if not tag_key or not _VALUES_KEY.match(tag_key):
                problems.append(f"no valid image tag key for component {spec.component!r}")
        elif spec.revision is not None and spec.revision < 1:
            problems.append(f"invalid revision {spec.revision!r}")
        if problems:
            raise ClusterPermanentError("invalid helm job spec: " + "; ".join(problems))

    # --- Jobs ----------------------------------------------------------------------------------

    def start_helm_job(self, spec: HelmJobSpec) -> str:
        """Create the Job; when it already exists (a retried Task) adopt it. Returns the Job name."""
        manifest = self.build_job_manifest(spec)
        name = manifest["metadata"]["name"]
        with _translated_errors(f"create job {name}"):
            try:
                # The client serialises a plain dict as is: the manifest we test is the manifest we send.
                self._batch.create_namespaced_job(
                    namespace=self._config.job_namespace,
                    body=manifest,  # type: ignore[arg-type]
                )
            except ApiException as exc:
                if exc.status != 409:  # 409: our earlier attempt created it; adopt it
                    raise
        return name

    def get_helm_job(self, spec: HelmJobSpec) -> JobState:
        """The Job's phase; for a finished Job also the (bounded) helm output and the failure reason."""
        name = self.job_name(spec)
        namespace = self._config.job_namespace
        with _translated_errors(f"read job {name}"):
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
        if succeeded:
            return JobState(name=name, phase="succeeded", output=bound_output(log, self._max_bytes))
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
            output=bound_output(log, self._max_bytes),
            error="; ".join(r for r in reasons if r) or "helm job failed",
        )

    def delete_helm_job(self, spec: HelmJobSpec, *, missing_ok: bool = True) -> None:
        """Delete the Job and its pod (abort). Raises JobNotFoundError only when `missing_ok` is False."""
        name = self.job_name(spec)
        with _translated_errors(f"delete job {name}"):
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
        with _translated_errors(f"list jobs for {namespace}/{release}"):
            jobs: Any = self._batch.list_namespaced_job(
                namespace=self._config.job_namespace, label_selector=_selector(wanted)
            )
        names = [
            job.metadata.name
            for job in jobs.items or []
            if _matches(job.metadata.labels, wanted) and not _is_finished(job.status)[0]
        ]
        return sorted(names)

    @property
    def _max_bytes(self) -> int:
        return self._config.max_output_bytes

    def _read_job_log(self, job_name: str) -> tuple[str, str | None]:
        """(log text, pod termination summary) of the Job's newest pod; ("", note) when gone."""
        namespace = self._config.job_namespace
        with _translated_errors(f"list pods of job {job_name}"):
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
        with _translated_errors(f"read log of pod {pod.metadata.name}"):
            try:
                log = self._core.read_namespaced_pod_log(
                    name=pod.metadata.name, namespace=namespace, container=CONTAINER_NAME
                )
            except ApiException as exc:
                if exc.status not in (400, 404):  # 400: container never started; 404: pod gone
                    raise
                return "", problem or f"pod log unavailable (HTTP {exc.status})"
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

    # --- Helm release state --------------------------------------------------------------------

    def release_status(self, namespace: str, release: str) -> ReleaseInfo:
        """Helm's view of a release from its Secrets (`sh.helm.release.v1.<release>.v<N>`).

        The newest revision gives status and revision. `last_deployed_revision` is the newest one
        in status deployed or, when none is (a failed non-atomic upgrade), the newest superseded one:
        the revision a recover/rollback should return to.
        """
        wanted = {"owner": "helm", "name": release}
        with _translated_errors(f"list helm secrets of {namespace}/{release}"):
            try:
                secrets: Any = self._core.list_namespaced_secret(namespace=namespace, label_selector=_selector(wanted))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return ReleaseInfo(release, namespace, None, None, None)
        prefix = f"sh.helm.release.v1.{release}.v"
        revisions: list[tuple[int, str]] = []
        for secret in secrets.items or []:
            labels = secret.metadata.labels or {}
            if not _matches(labels, wanted) or not (secret.metadata.name or "").startswith(prefix):
                continue
            try:
                revisions.append((int(labels.get("version", "")), labels.get("status", "unknown")))
            except ValueError:
                continue
        if not revisions:
            return ReleaseInfo(release, namespace, None, None, None)
        revisions.sort()
        revision, status = revisions[-1]
        deployed = [r for r, s in revisions if s == "deployed"]
        superseded = [r for r, s in revisions if s == "superseded"]
        last_good = max(deployed) if deployed else (max(superseded) if superseded else None)
        return ReleaseInfo(release, namespace, status, revision, last_good)
