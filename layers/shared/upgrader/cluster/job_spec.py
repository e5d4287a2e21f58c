"""A helm Job as the product writes it (pure): its name, labels and annotations, helm's argv (never a shell),
and the whole manifest, validated against what the admission policy admits.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from upgrader.cluster.bluegreen import SLOTS, slot_tag_key
from upgrader.cluster.types import ClusterConfig, ClusterPermanentError, HelmJobSpec
from upgrader.infra.components import DIGEST, REGISTRY, image_values

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

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_VALUES_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_CHART_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")
_CHART_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$")


def _digest(raw: str, length: int = 8) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:length]


def _slug(raw: str, max_len: int) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", raw.lower().replace("_", "-"))
    slug = re.sub(r"-{2,}", "-", slug).strip("-")
    return slug[: max(max_len, 0)].strip("-")


def customer_label(customer_id: str) -> str:
    """The customer id as a label value: itself when label-safe, else a slug plus a hash of the raw id."""
    if len(customer_id) <= 63 and LABEL_VALUE_RE.fullmatch(customer_id):
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
    if len(name) > 63 or not DNS_LABEL_RE.fullmatch(name):
        raise ClusterPermanentError(f"cannot build a valid Job name from {spec!r}")
    return name


def valid_tag(version: str | None) -> str | None:
    return version if version is not None and _OCI_TAG.fullmatch(version) else None


class JobManifests:
    """The gateway's pure half: helm's argv and the Job manifest for a spec, from the cluster config."""

    _config: ClusterConfig

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
            # A release train (`also`) sets its other components' tags in the same command: one helm
            # operation, one revision, so `--atomic` and a rollback to the revision before undo all of them.
            # Each image pinned to its resolved digest (`image_values`: in the tag value, or apart when the chart
            # declares the digest value, then "" when none was resolved so no earlier digest is reused).
            chart = self._config.chart_refs[spec.component]
            images = [(spec.component, spec.version, spec.digest), *spec.also]
            sets = [arg for component, version, digest in images
                    for key, value in image_values(self._config.image_tag_keys[component], str(version), digest,
                                                   digest_declared=component in spec.digest_values)
                    for arg in ("--set-string", f"{key}={value}")]  # fmt: skip
            return [
                "helm", "upgrade", spec.release, chart,
                "--namespace", spec.namespace,
                "--version", str(spec.chart_version),
                "--reset-then-reuse-values",
                *sets,
                "--wait", "--atomic",
                "--timeout", timeout,
                *history,
            ]  # fmt: skip
        if spec.operation in ("slot", "switch", "finalize"):
            # Blue-green (docs/blue-green.md): one value of this component changes, every other value is
            # kept. A slot step waits for every Deployment (the idle slot's new one included) and is
            # atomic, so a slot that never gets ready is undone and traffic never left the active slot.
            # The slot's image is pinned as an upgrade's is (`image_values`); a finalize empties its tag (a slot
            # without a tag is not deployed, and the next slot step into it sets its digest value again).
            key = slot_tag_key(spec.component, str(spec.slot))
            if spec.operation == "slot":
                values = image_values(key, str(spec.version), spec.digest,
                                      digest_declared=spec.component in spec.digest_values)  # fmt: skip
            elif spec.operation == "finalize":
                values = [(key, "")]
            else:
                values = [(f"{spec.component}.activeSlot", str(spec.slot))]
            return [
                "helm", "upgrade", spec.release, self._slot_chart_ref(spec),
                "--namespace", spec.namespace,
                "--version", str(spec.chart_version),
                "--reset-then-reuse-values",
                *(arg for k, v in values for arg in ("--set-string", f"{k}={v}")),
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
        name = helm_job_name(spec)
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

    def _train_problems(self, spec: HelmJobSpec) -> list[str]:
        """A train's other components: each known once, its tag valid, from the same chart (one release)."""
        problems: list[str] = []
        seen = {spec.component}
        for component, version, digest in spec.also:
            if component in seen:
                problems.append(f"component {component!r} set twice")
            seen.add(component)
            if not _OCI_TAG.fullmatch(version or ""):
                problems.append(f"invalid version {version!r} of {component!r}")
            if digest is not None and not DIGEST.fullmatch(digest):
                problems.append(f"invalid digest {digest!r} of {component!r} (sha256:<64 hex>)")
            tag_key = self._config.image_tag_keys.get(component)
            if not tag_key or not _VALUES_KEY.fullmatch(tag_key):
                problems.append(f"no valid image tag key for component {component!r}")
            if self._config.chart_refs.get(component) != self._config.chart_refs.get(spec.component):
                problems.append(f"{component!r} comes from another chart than {spec.component!r}: a train sets the "
                                "components of one release")  # fmt: skip
        return problems

    def _validate(self, spec: HelmJobSpec) -> None:
        problems: list[str] = []
        if spec.digest is not None and (spec.operation not in ("upgrade", "restore", "slot")
                                        or not DIGEST.fullmatch(spec.digest)):  # fmt: skip
            problems.append(f"invalid digest {spec.digest!r} (sha256:<64 hex>, on an upgrade, restore or slot step)")
        images = {spec.component, *(component for component, _, _ in spec.also)}
        if spec.digest_values and (spec.operation not in ("upgrade", "restore", "slot")
                                   or not set(spec.digest_values) <= images):  # fmt: skip
            problems.append(f"digest values {spec.digest_values!r} of components this {spec.operation} does not set")
        if spec.operation not in ("upgrade", "restore", "rollback", "recover", "slot", "switch", "finalize"):
            problems.append(f"unknown operation {spec.operation!r}")
        if len(spec.release) > 53 or not DNS_LABEL_RE.fullmatch(spec.release):
            problems.append(f"invalid release name {spec.release!r}")
        if len(spec.namespace) > 63 or not DNS_LABEL_RE.fullmatch(spec.namespace):
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
            problems.extend(self._train_problems(spec))
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
            if spec.component not in REGISTRY:
                problems.append(f"unknown component {spec.component!r}")
            if spec.chart_name is not None and (
                len(spec.chart_name) > 63 or not DNS_LABEL_RE.fullmatch(spec.chart_name)
            ):
                problems.append(f"invalid chart name {spec.chart_name!r}")
        elif spec.revision is None or spec.revision < 1:
            problems.append(f"a {spec.operation} needs an explicit revision >= 1, not {spec.revision!r}")
        if problems:
            raise ClusterPermanentError("invalid helm job spec: " + "; ".join(problems))
