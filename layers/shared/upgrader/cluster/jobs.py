"""Kubernetes adapter of the cluster port: Helm runs as a Job, Helm's state is read from its Secrets.

Every call is safe to repeat (Step Functions may run a Task twice): the Job name is deterministic, a
second create answers 409 and the existing Job is adopted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from upgrader.cluster.bluegreen import SLOT_LABEL, SLOTS
from upgrader.cluster.release import ReleaseDecodeError, decode_release_data, parse_release, secret_name
from upgrader.cluster.types import (
    DEFAULT_IMAGE_TAG_KEYS,
    ClusterConfig,
    ClusterPermanentError,
    ClusterTransientError,
    HelmJobSpec,
    HttpHealth,
    JobNotFoundError,
    JobState,
    ReleaseInfo,
    RolloutState,
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
ANNOTATION_CHART_VERSION = f"{LABEL_PREFIX}/chart-version"
ANNOTATION_SLOT = f"{LABEL_PREFIX}/slot"

CONTAINER_NAME = "helm"
HELM_HOME = "/helm"
# The Job controller labels its pods with both keys (the short one is the legacy form).
POD_JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
# The Job's activeDeadlineSeconds: helm's own --timeout for the operation, as much again for the
# `--atomic` rollback helm runs when the operation fails (it waits up to another --timeout), plus a
# margin for scheduling, the image and chart pulls. Killing helm any earlier could leave the release
# pending-rollback; a Job that still hits it is followed by a look at the release (orchestration).
DEADLINE_MARGIN_SECONDS = 300
# Revisions Helm keeps per release (its own default for upgrades is 10; rollbacks keep all without it).
HELM_HISTORY_MAX = 10
RUNNER_UID = 65532

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_VALUES_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_CHART_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")
_CHART_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$")
# Service proxy probes: a port name (IANA_SVC_NAME: <= 15 chars, at least one letter) or a number,
# and a path of unreserved URL characters only (no %, ?, #, ;): nothing to re-encode or smuggle.
_PORT_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_PORT_NUMBER = re.compile(r"^[1-9][0-9]{0,4}$")
_PROBE_PATH = re.compile(r"^[A-Za-z0-9._~/-]{0,255}$")

# Workload labels of the customer chart (Helm's recommended labels).
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_APP_COMPONENT = "app.kubernetes.io/component"
LABEL_SLOT = SLOT_LABEL  # blue-green: the slot a Deployment runs (docs/blue-green.md)
PROBE_TIMEOUT_SECONDS = 10.0
PROBE_BODY_BYTES = 512  # read at most this much of a probe's answer
PROBE_EXCERPT_CHARS = 200  # and quote at most this much of it in the detail


def _digest(raw: str, length: int = 8) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:length]


def _slug(raw: str, max_len: int) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", raw.lower().replace("_", "-"))
    slug = re.sub(r"-{2,}", "-", slug).strip("-")
    return slug[: max(max_len, 0)].strip("-")


def customer_label(customer_id: str) -> str:
    """The customer id as a label value: itself when label-safe, else a slug plus a hash of the raw id."""
    if len(customer_id) <= 63 and _LABEL_VALUE.fullmatch(customer_id):
        return customer_id
    digest = _digest(customer_id)
    slug = _slug(customer_id, 63 - len(digest) - 1)
    return f"{slug}-{digest}" if slug else digest


def job_deadline_seconds(helm_timeout_seconds: int) -> int:
    """activeDeadlineSeconds of a helm Job: the operation, helm's --atomic rollback, and a margin."""
    return 2 * helm_timeout_seconds + DEADLINE_MARGIN_SECONDS


def helm_job_name(spec: HelmJobSpec) -> str:
    """Deterministic DNS-1123 label (<= 63 chars) per (log row, operation, attempt).

    The log row id is unique per customer and operation record (an upgrade's row, each rollback's
    row), so an automatic rollback and a later requested rollback of the same customer never share a
    name. The hash of the raw customer id keeps two ids apart even when their slugs are equal
    ("Cust_1" and "cust-1").
    """
    prefix = f"helm-{spec.operation}-{spec.log_id}-"
    suffix = f"-{_digest(spec.customer_id)}-a{spec.attempt}"
    slug = _slug(spec.customer_id, 63 - len(prefix) - len(suffix))
    name = f"{prefix}{slug}{suffix}" if slug else f"{prefix}{suffix[1:]}"
    if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
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


def _valid_tag(version: str | None) -> str | None:
    return version if version is not None and _OCI_TAG.fullmatch(version) else None


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


def _read_json(response: Any) -> dict[str, Any]:
    """Body of a `_preload_content=False` response as JSON; the connection goes back to the pool."""
    try:
        parsed = json.loads(response.data or b"{}")
    except ValueError as exc:
        raise ClusterTransientError(f"unreadable API response: {exc}") from exc
    finally:
        response.release_conn()
    return parsed if isinstance(parsed, dict) else {}


def _matches(labels: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _selector(wanted: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in wanted.items())


# --- rollout and HTTP health (pure helpers) ------------------------------------------------------

WorkloadVerdict = tuple[str, str]  # (phase, "deployment <name>: ...")


def _count(status: Mapping[str, Any], key: str) -> int:
    value = status.get(key)
    return value if isinstance(value, int) else 0


def _generation_gap(meta: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    generation, observed = _count(meta, "generation"), _count(status, "observedGeneration")
    return f"observed generation {observed} < {generation}" if observed < generation else None


def deployment_verdict(obj: Mapping[str, Any]) -> WorkloadVerdict:
    """Rollout verdict of one Deployment (a raw API object), the way `kubectl rollout status` decides.

    A ProgressDeadlineExceeded condition counts only once the controller has observed the current
    generation: before that it belongs to the previous rollout.
    """
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name = meta.get("name", "?")
    want = spec.get("replicas") if isinstance(spec.get("replicas"), int) else 1
    ready, updated = _count(status, "readyReplicas"), _count(status, "updatedReplicas")
    available, total = _count(status, "availableReplicas"), _count(status, "replicas")
    stale = _generation_gap(meta, status)
    if stale is None:
        for condition in status.get("conditions") or []:
            if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
                "Progressing", "False", "ProgressDeadlineExceeded"
            ):  # fmt: skip
                message = condition.get("message") or "progress deadline exceeded"
                return "failed", f"deployment {name}: ProgressDeadlineExceeded: {message} ({ready}/{want} ready)"
    parts = [f"{ready}/{want} ready"]
    if updated != want:
        parts.append(f"{updated}/{want} updated")
    if available != want:
        parts.append(f"{available}/{want} available")
    if total > updated and updated == want:
        parts.append(f"{total - updated} old replicas terminating")
    if stale:
        parts.append(stale)
    if spec.get("paused"):
        parts.append("paused")
    done = stale is None and ready == updated == available == want and total <= want and not spec.get("paused")
    return ("ready" if done else "progressing"), f"deployment {name}: " + ", ".join(parts)


def statefulset_verdict(obj: Mapping[str, Any]) -> WorkloadVerdict:
    """Rollout verdict of one StatefulSet: all replicas ready and updated, current == update revision."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name = meta.get("name", "?")
    want = spec.get("replicas") if isinstance(spec.get("replicas"), int) else 1
    ready, updated = _count(status, "readyReplicas"), _count(status, "updatedReplicas")
    current, update = status.get("currentRevision"), status.get("updateRevision")
    stale = _generation_gap(meta, status)
    parts = [f"{ready}/{want} ready"]
    if updated != want:
        parts.append(f"{updated}/{want} updated")
    revision_behind = bool(current and update and current != update)
    if revision_behind:
        parts.append(f"revision {current} -> {update}")
    if stale:
        parts.append(stale)
    done = stale is None and ready == updated == want and not revision_behind
    return ("ready" if done else "progressing"), f"statefulset {name}: " + ", ".join(parts)


def summarize_rollout(verdicts: Mapping[str, WorkloadVerdict]) -> RolloutState:
    """Combine per-workload verdicts (keyed "deployment/<name>"): any failed -> failed; all ready -> ready."""
    names = tuple(sorted(verdicts))
    ordered = [verdicts[name] for name in names]
    failed = [detail for phase, detail in ordered if phase == "failed"]
    waiting = [detail for phase, detail in ordered if phase == "progressing"]
    if failed:
        return RolloutState("failed", "; ".join(failed + waiting), names)
    if waiting:
        return RolloutState("progressing", "; ".join(waiting), names)
    return RolloutState("ready", "; ".join(detail for _, detail in ordered), names)


def validate_probe(namespace: str, service: str, port: str, path: str) -> str:
    """Check a service-proxy probe target; return the path without its leading slash.

    Raises ClusterPermanentError: the values become part of an API server URL, so only DNS labels, a
    port name or number and unreserved URL characters (no "." or ".." segments) get through.
    """
    problems: list[str] = []
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        problems.append(f"invalid namespace {namespace!r}")
    if len(service) > 63 or not _DNS_LABEL.fullmatch(service):
        problems.append(f"invalid service name {service!r}")
    if _PORT_NUMBER.fullmatch(port):
        if not 1 <= int(port) <= 65535:
            problems.append(f"invalid port number {port!r}")
    elif len(port) > 15 or not _PORT_NAME.fullmatch(port) or not any(c.isalpha() for c in port):
        problems.append(f"invalid port {port!r}")
    relative = path[1:] if path.startswith("/") else path
    if not _PROBE_PATH.fullmatch(relative) or any(seg in (".", "..") for seg in relative.split("/")):
        problems.append(f"invalid probe path {path!r}")
    if problems:
        raise ClusterPermanentError("invalid http health check: " + "; ".join(problems))
    return relative


def _api_status(body: str | None) -> dict[str, Any] | None:
    """The API server's own error object (kind Status), or None when the body is something else."""
    try:
        parsed = json.loads(body or "")
    except ValueError:
        return None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("apiVersion") == "v1":
        return parsed
    return None


def _probe_detail(probe: str, status: int, body: str | None) -> str:
    excerpt = _excerpt(body)
    return f"{probe}: HTTP {status}: {excerpt}" if excerpt else f"{probe}: HTTP {status}"


def _excerpt(text: str | None) -> str:
    status = _api_status(text)
    if status is not None and status.get("message"):
        text = str(status["message"])
    flat = " ".join((text or "").split())
    return flat if len(flat) <= PROBE_EXCERPT_CHARS else flat[:PROBE_EXCERPT_CHARS] + "..."


class KubernetesClusterGateway:
    """Runs helm as Kubernetes Jobs and reads Helm release state, with the official client."""

    def __init__(self, api_client: k8s.ApiClient, config: ClusterConfig) -> None:
        self._config = config
        self._batch = k8s.BatchV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)

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
        history = ["--history-max", str(HELM_HISTORY_MAX)]
        if spec.operation in ("upgrade", "restore"):
            # --reset-then-reuse-values (Helm >= 3.14): the pinned chart's own defaults, then every value
            # the release was given (other components included), then only this component's tag.
            # (--reuse-values would keep the OLD chart's defaults when the chart version changes.)
            # --version pins the chart, so waves days apart install the same chart.
            chart = self._config.chart_refs[spec.component]
            tag_key = self._config.image_tag_keys[spec.component]
            return [
                "helm", "upgrade", spec.release, chart,
                "--namespace", spec.namespace,
                "--version", str(spec.chart_version),
                "--reset-then-reuse-values",
                "--set-string", f"{tag_key}={spec.version}",
                "--wait", "--atomic",
                "--timeout", timeout,
                *history,
            ]  # fmt: skip
        if spec.operation in ("slot", "switch", "finalize"):
            # Blue-green (docs/blue-green.md): one value of this component changes, every other value is
            # kept. A slot step waits for every Deployment (the idle slot's new one included) and is
            # atomic, so a slot that never gets ready is undone and traffic never left the active slot.
            if spec.operation in ("slot", "finalize"):
                value = f"{spec.component}.slots.{spec.slot}.tag={spec.version or ''}"
            else:
                value = f"{spec.component}.activeSlot={spec.slot}"
            return [
                "helm", "upgrade", spec.release, self._slot_chart_ref(spec),
                "--namespace", spec.namespace,
                "--version", str(spec.chart_version),
                "--reset-then-reuse-values",
                "--set-string", value,
                "--wait", "--atomic",
                "--timeout", timeout,
                *history,
            ]  # fmt: skip
        # rollback and recover: always to an explicit revision (without one helm goes to "current
        # minus one", whatever changed the release last).
        return ["helm", "rollback", spec.release, str(spec.revision), "--namespace", spec.namespace,
                "--wait", "--timeout", timeout, *history]  # fmt: skip

    def _slot_chart_ref(self, spec: HelmJobSpec) -> str:
        """A blue-green step keeps the chart the release runs: the component's chart reference with its
        last path segment (the chart's name) replaced by that chart's name."""
        ref = self._config.chart_refs[spec.component]
        if not spec.chart_name:
            return ref
        return f"{ref.rsplit('/', 1)[0]}/{spec.chart_name}"

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
        if spec.chart_version is not None:
            annotations[ANNOTATION_CHART_VERSION] = spec.chart_version
        if spec.slot is not None:
            annotations[ANNOTATION_SLOT] = spec.slot
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
                "activeDeadlineSeconds": job_deadline_seconds(self._config.helm_timeout_seconds),
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
        if spec.operation not in ("upgrade", "restore", "rollback", "recover", "slot", "switch", "finalize"):
            problems.append(f"unknown operation {spec.operation!r}")
        if len(spec.release) > 53 or not _DNS_LABEL.fullmatch(spec.release):
            problems.append(f"invalid release name {spec.release!r}")
        if len(spec.namespace) > 63 or not _DNS_LABEL.fullmatch(spec.namespace):
            problems.append(f"invalid namespace {spec.namespace!r}")
        if not spec.customer_id:
            problems.append("empty customer id")
        if spec.attempt < 1 or spec.upgrade_id < 0 or spec.log_id < 0:
            problems.append("attempt must be >= 1, upgrade and log ids >= 0")
        if spec.operation in ("upgrade", "restore"):
            if spec.version is None or not _OCI_TAG.fullmatch(spec.version):
                problems.append(f"invalid version {spec.version!r}")
            if spec.chart_version is None or not _CHART_VERSION.fullmatch(spec.chart_version):
                problems.append(f"invalid or missing chart version {spec.chart_version!r} (charts are always pinned)")
            chart = self._config.chart_refs.get(spec.component)
            tag_key = self._config.image_tag_keys.get(spec.component)
            if not chart or not _CHART_REF.fullmatch(chart):
                problems.append(f"no valid chart reference for component {spec.component!r}")
            if not tag_key or not _VALUES_KEY.fullmatch(tag_key):
                problems.append(f"no valid image tag key for component {spec.component!r}")
        elif spec.operation in ("slot", "switch", "finalize"):
            if spec.slot not in SLOTS:
                problems.append(f"a {spec.operation} step needs the slot blue or green, not {spec.slot!r}")
            if spec.operation == "slot" and (spec.version is None or not _OCI_TAG.fullmatch(spec.version)):
                problems.append(f"invalid version {spec.version!r}")
            if spec.operation == "finalize" and spec.version:
                problems.append("a finalize empties the slot: no version")
            if spec.chart_version is None or not _CHART_VERSION.fullmatch(spec.chart_version):
                problems.append(f"invalid or missing chart version {spec.chart_version!r} (charts are always pinned)")
            chart = self._config.chart_refs.get(spec.component)
            if not chart or not _CHART_REF.fullmatch(chart):
                problems.append(f"no valid chart reference for component {spec.component!r}")
            if spec.component not in DEFAULT_IMAGE_TAG_KEYS:
                problems.append(f"unknown component {spec.component!r}")
            if spec.chart_name is not None and (len(spec.chart_name) > 63 or not _DNS_LABEL.fullmatch(spec.chart_name)):
                problems.append(f"invalid chart name {spec.chart_name!r}")
        elif spec.revision is None or spec.revision < 1:
            problems.append(f"a {spec.operation} needs an explicit revision >= 1, not {spec.revision!r}")
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
        return self.get_helm_job_named(self.job_name(spec))

    def get_helm_job_named(self, name: str) -> JobState:
        """`get_helm_job` by the Job's name (the reconciler knows names, not specs)."""
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
        """(log text, pod termination summary) of the Job's newest pod; ("", note) when gone or unreadable.

        The log is best effort: the Job's status decides the outcome. A log the API server cannot give
        (400, 404, any 5xx) gives ("", why); not reaching the API server at all is transient (the
        release must be read too), and so are 401/429."""
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
                # 400: container never started; 404: pod gone; 5xx: the API server could not reach the
                # node's kubelet (node gone, kubelet restarting, its port firewalled). Anything else is
                # about us (401 token, 429 rate: transient; 403 RBAC: permanent, a broken install).
                if exc.status not in (400, 404) and (exc.status or 0) < 500:
                    raise
                unavailable = f"pod log unavailable: HTTP {exc.status} {exc.reason}: {_excerpt(exc.body)}"
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

    # --- Helm release state --------------------------------------------------------------------

    def release_status(self, namespace: str, release: str) -> ReleaseInfo:
        """Helm's view of a release from its Secrets (`sh.helm.release.v1.<release>.v<N>`).

        The newest revision gives status and revision. The revision a recover should return to
        (`last_deployed_revision`) is the newest one in status deployed or, when none is (a failed
        non-atomic upgrade or rollback), the newest superseded one; its release record (decoded from
        Helm's storage format) gives the chart version and each component's image tag: what runs.
        """
        wanted = {"owner": "helm", "name": release}
        with _translated_errors(f"list helm secrets of {namespace}/{release}"):
            try:
                response: Any = self._core.list_namespaced_secret(
                    namespace=namespace, label_selector=_selector(wanted), _preload_content=False
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return ReleaseInfo(release, namespace, None, None, None)
            items = _read_json(response).get("items") or []
        revisions: list[tuple[int, str, dict[str, Any]]] = []
        for secret in items:
            meta = secret.get("metadata") or {}
            labels = meta.get("labels") or {}
            if not _matches(labels, wanted) or meta.get("name") != secret_name(release, _int(labels.get("version"))):
                continue
            revisions.append((_int(labels.get("version")), str(labels.get("status", "unknown")), secret))
        if not revisions:
            return ReleaseInfo(release, namespace, None, None, None)
        revisions.sort(key=lambda item: item[0])
        revision, status = revisions[-1][0], revisions[-1][1]
        deployed = [r for r, s, _ in revisions if s == "deployed"]
        superseded = [r for r, s, _ in revisions if s == "superseded"]
        last_good = max(deployed) if deployed else (max(superseded) if superseded else None)
        # Versions and chart come from the last revision that deployed: while the newest one is failed
        # or pending, what runs is what that revision left (a failed rollback changed nothing that ran).
        source = next((item for item in revisions if item[0] == last_good), revisions[-1])
        try:
            record = parse_release(
                decode_release_data(str((source[2].get("data") or {}).get("release", ""))), status_label=source[1]
            )
        except ReleaseDecodeError as exc:
            raise ClusterPermanentError(
                f"Helm release Secret {secret_name(release, source[0])} in {namespace} is unreadable: {exc}"
            ) from exc
        # A tag the API's version grammar refuses (the release's values are the customer's: 201 characters,
        # markup) is not a version the inventory records: None, as if the release did not set it.
        versions = {
            c: _valid_tag(record.component_version(c, key)[0]) for c, key in self._config.image_tag_keys.items()
        }
        slots = {c: found for c in self._config.image_tag_keys if (found := record.slots_of(c)) is not None}
        return ReleaseInfo(
            release, namespace, status, revision, last_good,
            chart_name=record.chart_name, chart_version=record.chart_version, versions=versions, slots=slots,
            secrets=record.secret_values(),
        )  # fmt: skip

    def helm_jobs_of(self, log_id: int) -> dict[str, bool]:
        """Our Jobs of one log row (any operation, any attempt): name -> finished.

        A retried StartHelmJob uses it to adopt a Job its earlier attempt created but could not record.
        """
        wanted = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_LOG_ID: str(log_id)}
        with _translated_errors(f"list jobs of log row {log_id}"):
            jobs: Any = self._batch.list_namespaced_job(
                namespace=self._config.job_namespace, label_selector=_selector(wanted)
            )
        return {
            job.metadata.name: _is_finished(job.status)[0]
            for job in jobs.items or []
            if _matches(job.metadata.labels, wanted)
        }

    # --- post-upgrade health -------------------------------------------------------------------

    def rollout_status(self, namespace: str, release: str, component: str, slot: str | None = None) -> RolloutState:
        """Have the component's Deployments and StatefulSets of this release finished rolling out?

        Workloads are those labelled app.kubernetes.io/instance=<release> and
        app.kubernetes.io/component=<component> in the namespace (with `slot`, a blue-green slot: also
        upgrades.example.com/slot=<slot>). None at all is "failed": the chart does not label them as
        expected, or the release is not where we think it is.
        """
        problems = []
        if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
            problems.append(f"invalid namespace {namespace!r}")
        if len(release) > 53 or not _DNS_LABEL.fullmatch(release):
            problems.append(f"invalid release name {release!r}")
        if len(component) > 63 or not _LABEL_VALUE.fullmatch(component):
            problems.append(f"invalid component {component!r}")
        if slot is not None and slot not in SLOTS:
            problems.append(f"invalid slot {slot!r}")
        if problems:
            raise ClusterPermanentError("invalid rollout check: " + "; ".join(problems))
        wanted = {LABEL_INSTANCE: release, LABEL_APP_COMPONENT: component}
        if slot is not None:
            wanted[LABEL_SLOT] = slot
        selector = _selector(wanted)
        verdicts: dict[str, tuple[str, str]] = {}
        listings = (
            ("deployment", self._apps.list_namespaced_deployment, deployment_verdict),
            ("statefulset", self._apps.list_namespaced_stateful_set, statefulset_verdict),
        )
        for kind, list_call, verdict in listings:
            with _translated_errors(f"list {kind}s of {namespace}/{release}"):
                try:
                    # Raw JSON: a handful of status fields, no model build of every pod template.
                    response: Any = list_call(namespace=namespace, label_selector=selector, _preload_content=False)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    continue
                items = _read_json(response).get("items") or []
            for obj in items:
                meta = obj.get("metadata") or {}
                # Filter ourselves too: selectors are a server feature some fakes (and proxies) ignore.
                if _matches(meta.get("labels"), wanted) and meta.get("name"):
                    verdicts[f"{kind}/{meta['name']}"] = verdict(obj)
        if not verdicts:
            return RolloutState(
                "failed", f"no Deployment or StatefulSet labelled {selector} in namespace {namespace}", ()
            )
        return summarize_rollout(verdicts)

    def http_health(self, namespace: str, service: str, port: str, path: str) -> HttpHealth:
        """GET `path` on `service:port` through the API server's service proxy; 2xx is healthy.

        Any other HTTP status is unhealthy, 5xx included: a 503 may come from the service or from the
        API server ("no endpoints available"), and they cannot always be told apart. Exceptions: the
        API server's own 401 (token expired) and 429 (throttled) are ClusterTransientError, its own 403
        (RBAC: services/proxy not granted) is ClusterPermanentError: neither says anything about the
        service. Connection errors and timeouts are ClusterTransientError.
        """
        relative = validate_probe(namespace, service, port, path)
        target = f"{service}:{port}"
        probe = f"GET {namespace}/{target}/{relative}"
        with _translated_errors(probe):
            try:
                response: Any = self._core.connect_get_namespaced_service_proxy_with_path(
                    name=target,
                    namespace=namespace,
                    path=relative,
                    _preload_content=False,
                    _request_timeout=PROBE_TIMEOUT_SECONDS,
                )
            except ApiException as exc:
                status = exc.status or 0
                from_api_server = _api_status(exc.body) is not None
                if status == 0 or (from_api_server and status in (401, 403, 429)):
                    raise  # mapped by _translated_errors: 0/401/429 transient, 403 permanent
                return HttpHealth(False, status, _probe_detail(probe, status, exc.body))
            try:
                body = response.read(PROBE_BODY_BYTES)
            finally:
                response.close()  # an unread rest must not go back to the pool
                response.release_conn()
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body or "")
        return HttpHealth(True, response.status, _probe_detail(probe, response.status, text))
