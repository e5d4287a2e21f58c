"""Configuration, read once per cold start from the environment into a validated model."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from upgrader.infra.names import HELM_IMAGE_PATTERN, JOB_NAMESPACE, JOB_SERVICE_ACCOUNT


class SettingsError(RuntimeError):
    """The environment does not describe a usable configuration."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    database_url: str | None = Field(default=None, description="local runs and tests only (no password)")
    db_secret_arn: str | None = None
    # RDS Proxy (AWS, the stack's own database): IAM authentication as db_user, TLS verified in full.
    db_proxy_endpoint: str | None = None
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_user: str | None = None
    db_name: str | None = None
    upgrade_state_machine_arn: str | None = None
    manifest_bucket: str | None = None
    # Seconds between two looks at a running Helm Job; tests and the local stack pass 0 or 1.
    job_poll_seconds: int = Field(default=15, ge=0, le=3600)
    # The first look at a running Job waits the component's typical helm duration learned from recorded
    # attempts (off: it waits job_poll_seconds, like every later look).
    learn_helm_duration: bool = True
    # How long the canary gate waits for /continue before the upgrade times out.
    approval_timeout_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    default_max_concurrency: int = Field(default=10, ge=1, le=1000)
    # The highest maxConcurrency a deploy or rollback may ask for: in AWS the template sets it to the
    # reserved concurrency of the per-customer workers, so one run never outgrows them. None: no cap.
    max_concurrency_cap: int | None = Field(default=None, ge=1, le=1000)
    # eks (AWS), kubeconfig (a kubeconfig in Secrets Manager), kubeconfig-file (a local kubeconfig file:
    # the local stack against a real cluster), url (a plain API server URL: tests, the simulated cluster).
    cluster_mode: Literal["eks", "kubeconfig", "kubeconfig-file", "url"] = "url"
    eks_cluster_name: str | None = None
    kubeconfig_secret_arn: str | None = None
    kubeconfig_path: str | None = None
    kube_api_url: str | None = None
    # url mode: a file holding the bearer token to send (like a projected service-account token; it is
    # read again when it changes). Never the token itself in the environment.
    kube_token_file: str | None = None
    # url mode: the token file of the reader identity (k8s/README.md), sent by the reading adapters (the
    # sync's fleet reader, the rollout checks); unset: KUBE_TOKEN_FILE. In AWS each function's own role is
    # its identity (EKS access entries), so this is for local runs, where every function shares a process.
    kube_reader_token_file: str | None = None
    # url mode over https: the CA file that signed the API server's certificate (a private CA, e.g. the
    # local stack's real control plane, upgradectl/local/realcluster); unset: the system's trust store.
    kube_ca_file: str | None = None
    job_namespace: str = JOB_NAMESPACE
    # helm's --timeout in the Jobs (--wait, --atomic); None: ClusterConfig's default (600 s)
    helm_timeout_seconds: int | None = Field(default=None, ge=30, le=6 * 3600)
    helm_image: str | None = None  # None: upgrader.infra.names.HELM_IMAGE; always pinned by digest
    job_service_account: str = JOB_SERVICE_ACCOUNT
    chart_refs: dict[str, str] = Field(default_factory=dict)
    # JSON object component -> the Helm value key holding its image tag (default <component>.image.tag):
    # read by discovery and the release checks, set by helm upgrades.
    image_tag_keys: dict[str, str] = Field(default_factory=dict)
    aws_region: str | None = None
    # Discovery (upgrader.fleet.discovery): which namespaces are customers and how their ids are made.
    customer_namespace_pattern: str = "customer-*"
    customer_namespace_selector: str | None = Field(default=None, description="a label selector for the namespace LIST")
    customer_id_template: str = "cust_{suffix}"
    customer_id_label: str | None = Field(default=None, description="a namespace label whose value is the id")
    customer_release_template: str = "{namespace}"
    discovery_concurrency: int = Field(default=8, ge=1, le=64)
    # Rings (upgrader.promotion.rings): their order, first to last, and the namespace label naming a
    # customer's ring at discovery. Checked at cold start (factory.ring_order, factory.ring_labels).
    ring_order: str = "staging,internal,early,production"
    customer_ring_label: str = "ring"
    # The function that runs a sync (api_sync invokes it asynchronously).
    sync_function_name: str | None = None
    # How long helm's full output (upgrader.rollout.helm_output) is kept: the reconciler's sweep deletes older ones.
    helm_output_retention_days: int = Field(default=30, ge=1, le=3650)
    # How long a deploy's Idempotency-Key is remembered.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)

    # Lifecycle events (upgrader.notifications.publisher): the EventBridge custom bus the outbox drains to, how long one
    # publisher invocation keeps draining, and when a running upgrade counts as making no progress.
    event_bus_name: str | None = None
    powertools_service_name: str = "customer-upgrades"  # the `service` dimension of every metric
    publish_drain_seconds: int = Field(default=50, ge=0, le=840)
    no_progress_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    # Customer notices (upgrader.rollout.notices): how long before a customer's planned start it is told.
    notice_lead_minutes: int = Field(default=60, ge=0, le=30 * 24 * 60)
    # Team notifications (upgrader.notifications.slack): the bot token's secret, the channel, the Web API's base URL
    # (a local stand-in in tests), links in messages, at most one message update per upgrade this often.
    slack_token_secret_arn: str | None = None
    slack_channel: str | None = None
    slack_api_url: str = "https://slack.com/api"
    slack_min_update_seconds: float = Field(default=1.0, ge=0, le=60)
    api_base_url: str | None = None
    # Metric analysis between waves (upgrader.analysis, docs/analysis.md): the Prometheus query API's base URL
    # (unset: a prometheus check measures nothing, which is inconclusive) and how its requests authenticate:
    # signed with SigV4 (Amazon Managed Prometheus, service aps, the function's own role), or a bearer token
    # read from Secrets Manager (the secret's ARN or name; its string, or its `token` key when JSON). Not both.
    analysis_prometheus_url: str | None = None
    analysis_prometheus_sigv4: bool = False
    analysis_prometheus_token_secret_arn: str | None = None
    # Subscriptions: which components' upgrades and which severities notify (empty: every component).
    notify_components: list[str] = Field(default_factory=list)
    notify_severities: list[str] = Field(default_factory=lambda: ["info", "attention", "critical"])
    # Images checked before the first wave (docs/images.md): "auto" checks every customer whose release names
    # its image repository (customers discovered before repositories were recorded are counted as unchecked),
    # "required" refuses a customer whose repository is not known, "off" checks nothing (recorded as such).
    image_preflight: Literal["auto", "required", "off"] = "auto"
    # Tags refused besides `latest` (a regular expression over the whole tag, e.g. `main|dev-.*`).
    mutable_tag_pattern: str | None = None
    # A Secrets Manager secret: JSON {"<registry host>": {"username": ..., "password": ...}} (ECR hosts use the
    # function's role instead); registries not named are asked anonymously.
    image_registry_secret_arn: str | None = None
    image_registry_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @field_validator("mutable_tag_pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return pattern

    @field_validator("notify_components", "notify_severities", mode="before")
    @classmethod
    def _parse_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("helm_image")
    @classmethod
    def _helm_image_pinned(cls, image: str | None) -> str | None:
        # told at cold start, naming HELM_IMAGE (the cluster config checks it again, for every caller)
        if image is not None and not re.fullmatch(HELM_IMAGE_PATTERN, image):
            raise ValueError(f"must be pinned by digest, <repository>[:tag]@sha256:<64 hex digits>, not {image!r}")
        return image

    @field_validator("chart_refs", "image_tag_keys", mode="before")
    @classmethod
    def _parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @model_validator(mode="after")
    def _one_prometheus_authentication(self) -> Settings:
        if self.analysis_prometheus_sigv4 and self.analysis_prometheus_token_secret_arn:
            raise ValueError(
                "ANALYSIS_PROMETHEUS_SIGV4 and ANALYSIS_PROMETHEUS_TOKEN_SECRET_ARN: Prometheus takes one of SigV4 "
                "or a bearer token, not both"
            )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        names = {name: name.upper() for name in cls.model_fields}
        names["aws_region"] = "AWS_REGION"
        raw = {field: env[var] for field, var in names.items() if env.get(var, "") != ""}
        if "aws_region" not in raw and env.get("AWS_DEFAULT_REGION"):
            raw["aws_region"] = env["AWS_DEFAULT_REGION"]
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{names.get(str(err['loc'][0]), str(err['loc'][0])) if err['loc'] else 'environment'}: {err['msg']}"
                for err in exc.errors()
            )
            raise SettingsError(f"invalid configuration in the environment: {problems}") from exc
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"invalid configuration in the environment: CHART_REFS or IMAGE_TAG_KEYS is not JSON: {exc}"
            ) from exc

    def require(self, *fields: str) -> None:
        missing = [f.upper() for f in fields if getattr(self, f) in (None, "")]
        if missing:
            raise SettingsError(f"missing environment variable(s): {', '.join(missing)}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached: environment variables are read once)."""
    return Settings.from_env()
