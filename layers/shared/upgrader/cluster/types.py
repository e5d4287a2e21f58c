"""Cluster port: configuration, value objects and named errors.

This module must stay free of the `kubernetes` import (it costs seconds): API functions and domain
code import it to talk about Jobs and releases without loading the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from upgrader.cluster.bluegreen import Slots
from upgrader.infra.components import default_chart_refs, default_image_tag_keys
from upgrader.infra.names import HELM_IMAGE, HELM_IMAGE_PATTERN, JOB_NAMESPACE, JOB_SERVICE_ACCOUNT

HelmOperation = Literal["upgrade", "rollback", "recover", "restore", "slot", "switch", "finalize"]
JobPhase = Literal["pending", "running", "succeeded", "failed", "missing"]
RolloutPhase = Literal["ready", "progressing", "failed"]

DEFAULT_HELM_IMAGE = HELM_IMAGE  # upgrader.infra.names: the one definition

_VALUE_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_HELM_IMAGE = re.compile(HELM_IMAGE_PATTERN)


def require_digest(image: str) -> str:
    """The helm image when it is pinned by digest (`<repository>[:tag]@sha256:<64 hex>`); ValueError else."""
    if not _HELM_IMAGE.fullmatch(image):
        raise ValueError(
            f"the helm image must be pinned by digest, <repository>[:tag]@sha256:<64 hex digits>, not {image!r} "
            f"(the default is {HELM_IMAGE}; docs/explanation/security.md: Mirroring the helm image)"
        )
    return image


# Helm release states in which another helm operation is refused ("another operation is in progress").
PENDING_RELEASE_STATES = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})


class ClusterConfig(BaseModel):
    """How to reach the cluster and how to shape the Helm Jobs. Built once per cold start."""

    # Built when first used: only the cluster workers validate one (the others import this module for its types).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    mode: Literal["eks", "kubeconfig", "kubeconfig-file", "url"]
    eks_cluster_name: str | None = None
    kubeconfig_secret_arn: str | None = None
    kubeconfig_path: str | None = None  # kubeconfig-file mode (local runs): its current context is used
    api_url: str | None = None
    token_file: str | None = None  # url mode: a file holding the bearer token (KUBE_TOKEN_FILE)
    ca_file: str | None = None  # url mode over https: the CA of the API server's certificate (KUBE_CA_FILE)
    job_namespace: str = JOB_NAMESPACE
    helm_image: str = DEFAULT_HELM_IMAGE
    service_account: str = JOB_SERVICE_ACCOUNT
    chart_refs: dict[str, str] = Field(default_factory=default_chart_refs)
    image_tag_keys: dict[str, str] = Field(default_factory=default_image_tag_keys)
    helm_timeout_seconds: int = Field(default=600, ge=30, le=6 * 3600)
    ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    max_output_bytes: int = Field(default=16384, ge=256)
    region: str | None = None

    @field_validator("helm_image")
    @classmethod
    def _pinned_by_digest(cls, image: str) -> str:
        return require_digest(image)

    @field_validator("image_tag_keys")
    @classmethod
    def _known_components_and_keys(cls, keys: dict[str, str]) -> dict[str, str]:
        defaults = default_image_tag_keys()  # the components registered (upgrader.infra.components)
        unknown = sorted(set(keys) - set(defaults))
        if unknown:
            raise ValueError(f"image tag keys for unknown components: {', '.join(unknown)}")
        bad = sorted(k for k, v in keys.items() if not _VALUE_KEY.match(v))
        if bad:
            raise ValueError(f"image tag keys must be dotted Helm value keys such as api.image.tag: {', '.join(bad)}")
        return {**defaults, **keys}

    @model_validator(mode="after")
    def _mode_has_its_target(self) -> ClusterConfig:
        required = {
            "eks": "eks_cluster_name",
            "kubeconfig": "kubeconfig_secret_arn",
            "kubeconfig-file": "kubeconfig_path",
            "url": "api_url",
        }
        needed = required[self.mode]
        if not getattr(self, needed):
            raise ValueError(f"cluster mode {self.mode!r} needs {needed}")
        return self

    @classmethod
    def from_settings(cls, settings: Any, *, reader: bool = False) -> ClusterConfig:
        """Build from `upgrader.infra.settings.Settings` (duck-typed to keep this module import-light).

        Chart references given in the environment override the defaults per component. `reader`: the
        configuration of the reader identity's adapters (in url mode its own token file, when one is set).
        """
        values: dict[str, Any] = {
            "mode": settings.cluster_mode,
            "eks_cluster_name": settings.eks_cluster_name,
            "kubeconfig_secret_arn": settings.kubeconfig_secret_arn,
            "kubeconfig_path": getattr(settings, "kubeconfig_path", None),
            "api_url": settings.kube_api_url,
            "token_file": (reader and getattr(settings, "kube_reader_token_file", None))
            or getattr(settings, "kube_token_file", None),
            "ca_file": getattr(settings, "kube_ca_file", None),
            "job_namespace": settings.job_namespace,
            "chart_refs": {**default_chart_refs(), **(settings.chart_refs or {})},
            "image_tag_keys": dict(getattr(settings, "image_tag_keys", None) or {}),
            "region": settings.aws_region,
        }
        if settings.helm_image:
            values["helm_image"] = settings.helm_image
        if getattr(settings, "helm_timeout_seconds", None):
            values["helm_timeout_seconds"] = settings.helm_timeout_seconds
        if settings.job_service_account:
            values["service_account"] = settings.job_service_account
        return cls.model_validate(values)


@dataclass(frozen=True, slots=True)
class HelmJobSpec:
    """One helm operation for one customer release. Same spec -> same Job name (idempotent create).

    upgrade  `helm upgrade --reuse-values --set-string <component tag>=<version> --version <chart_version>`
    restore  the same command with the component's previous version: a component-scoped rollback that
             keeps every other change made to the release since
    rollback `helm rollback <release> <revision>` (exact: only while the release is still at the
             revision the upgrade produced)
    recover  `helm rollback <release> <revision>` of a release left in pending-* by a helm that died
    slot     blue-green: `helm upgrade --reset-then-reuse-values --set-string <component>.slots.<slot>.tag=<version>`
             (`<version>@<digest>` when pinned) puts the version on the idle slot (the active one keeps serving)
    switch   blue-green: the same with `<component>.activeSlot=<slot>`: the Service follows that slot at once
    finalize blue-green: the same with `<component>.slots.<slot>.tag=` (empty): the old slot's Deployment goes
    """

    upgrade_id: int
    log_id: int
    customer_id: str
    component: str
    namespace: str
    release: str
    operation: HelmOperation
    version: str | None = None  # upgrade/restore/slot: the image tag to set
    digest: str | None = None  # upgrade/restore/slot: the tag's digest, pinned (the value becomes `<tag>@<digest>`)
    revision: int | None = None  # rollback/recover: the revision to return to (always explicit)
    attempt: int = 1
    chart_version: str | None = None  # upgrade/restore/slot/switch: the chart version, pinned (helm --version)
    slot: str | None = None  # slot/switch: the blue-green slot (blue | green) the step sets
    # slot/switch: the chart the release runs (its name), pulled from the component's registry path
    chart_name: str | None = None
    # upgrade/restore of a release train: the train's other components, their tags and digests (None: the tag
    # alone), set in the same helm command (one `--set-string` each), so one revision holds the whole train
    also: tuple[tuple[str, str, str | None], ...] = ()
    # upgrade/restore/slot: the components (this one, the train's others) whose release takes the digest apart
    # (`ReleaseInfo.digest_values`): their tag is set plain and their digest value beside it, "" when no digest
    # was resolved (`upgrader.infra.components.image_values`); the others get the pinned tag value
    digest_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobState:
    """What the cluster says about one Helm Job."""

    name: str
    phase: JobPhase
    output: str = ""  # tail of the pod log, bounded; starts with "[truncated N bytes]" when cut
    error: str | None = None  # failure reason: Job condition, pod termination, helm's "Error:" line
    seconds: float | None = None  # a succeeded Job: status.startTime to completionTime (a second's resolution)

    @property
    def finished(self) -> bool:
        return self.phase in ("succeeded", "failed")


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """Helm's own view of a release: its newest revision, read from Helm's release Secrets."""

    release: str
    namespace: str
    status: str | None  # deployed, failed, superseded, pending-upgrade, ...; None = no such release
    revision: int | None
    last_deployed_revision: int | None
    chart_name: str | None = None
    chart_version: str | None = None
    # Each component's image tag in the newest revision (user values, else the chart's defaults); on a
    # blue-green release the active slot's tag.
    versions: dict[str, str | None] = field(default_factory=dict)
    # Blue-green components only: their slots (active one, each slot's tag).
    slots: dict[str, Slots] = field(default_factory=dict)
    # The components whose image the release takes as a tag and a digest apart (docs/images.md, the chart contract
    # for digests, form 2: `ReleaseRecord.declares_digest`); every helm Job that sets their image sets both.
    digest_values: frozenset[str] = field(default_factory=frozenset)
    # The release's secret values (upgrader.infra.redaction): what redacts helm's output and errors. Never in
    # the snapshot, a repr or a comparison.
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def stuck(self) -> bool:
        """A helm operation is in progress, or a helm that died left it mid-operation."""
        return self.status in PENDING_RELEASE_STATES

    def snapshot(self) -> dict[str, Any]:
        """What the state machine carries and the database records (JSON)."""
        return {
            "revision": self.revision,
            "status": self.status,
            "chartVersion": self.chart_version,
            "versions": dict(self.versions),
            **(
                {"slots": {c: {"active": s.active, "tags": dict(s.tags)} for c, s in self.slots.items()}}
                if self.slots
                else {}
            ),
        }


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Whether a component's Deployments/StatefulSets of one release have finished rolling out.

    ready: every workload runs the newest spec with all replicas updated, ready (and available);
    progressing: not yet (poll again until the caller's deadline); failed: a Deployment passed its
    progress deadline, or no workload carries the release/component labels at all.
    """

    phase: RolloutPhase
    detail: str
    workloads: tuple[str, ...] = ()  # "deployment/<name>", "statefulset/<name>", sorted


@dataclass(frozen=True, slots=True)
class HttpHealth:
    """One HTTP probe through the API server's service proxy."""

    healthy: bool
    status: int | None  # the HTTP status seen; None when no response came back
    detail: str  # e.g. "GET stack-api:http/healthz: HTTP 503: <bounded body excerpt>"


class ClusterGateway(Protocol):
    """The port the workers use; `upgrader.cluster.jobs.KubernetesClusterGateway` is the adapter."""

    def job_name(self, spec: HelmJobSpec) -> str: ...

    def start_helm_job(self, spec: HelmJobSpec) -> str: ...

    def get_helm_job(self, spec: HelmJobSpec) -> JobState: ...

    def get_helm_job_named(self, name: str) -> JobState: ...

    def helm_jobs_of(self, log_id: int) -> dict[str, bool]: ...

    def release_status(self, namespace: str, release: str) -> ReleaseInfo: ...

    def active_jobs_for_release(self, namespace: str, release: str) -> list[str]: ...

    def rollout_status(self, namespace: str, release: str, component: str, slot: str | None = None) -> RolloutState: ...

    def http_health(self, namespace: str, service: str, port: str, path: str) -> HttpHealth: ...


class ClusterTransientError(Exception):
    """Worth retrying: HTTP 429/5xx, connection errors, timeouts."""


class ClusterPermanentError(Exception):
    """Retrying will not help: forbidden, rejected (4xx) or an invalid Job spec."""


class JobNotFoundError(Exception):
    """The Helm Job is not (or no longer) in the cluster."""


# ---------------------------------------------------------------- the fleet reader (discovery's port)
@dataclass(frozen=True, slots=True)
class NamespaceRef:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReleaseSnapshot:
    """A release as its deployed revision records it."""

    name: str
    revision: int
    status: str
    chart_name: str | None
    chart_version: str | None
    versions: dict[str, str | None]  # component -> image tag (None: neither the values nor the chart set it)
    sources: dict[str, str | None]  # component -> "values" | "chart-defaults" | None
    # component -> the image repository named beside its tag (`api.image.repository`); absent: none named
    repositories: dict[str, str] = field(default_factory=dict)
    # component -> the digest its release pins the image to (`ReleaseRecord.digest_of`); absent: none
    digests: dict[str, str] = field(default_factory=dict)


class ReleaseUnreadable(Exception):
    """The namespace's release cannot be read: reported for that namespace, the sync goes on."""


class FleetReader(Protocol):
    """The port discovery reads the cluster through (`upgrader.fleet.discovery`; `upgrader.cluster.discovery` is the adapter)."""

    @property
    def requests(self) -> int: ...

    def namespaces(self, label_selector: str | None = None) -> Iterator[NamespaceRef]: ...

    def release_in(self, namespace: str, preferred: str) -> ReleaseSnapshot | None: ...
