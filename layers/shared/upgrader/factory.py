"""Builds the adapters once per cold start (and lets tests and the local stack swap them).

Each adapter's module is imported when the adapter is first built, not when this module is: a function
loads only what it uses (its cold start does not pay for the pydantic models, the kubernetes client or
boto3 of the others)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from upgrader.infra.settings import Settings, get_settings

if TYPE_CHECKING:
    from upgrader.api.idempotency import IdempotencyRepository
    from upgrader.cluster.types import ClusterGateway, FleetReader
    from upgrader.fleet.discovery_rules import DiscoveryRules
    from upgrader.fleet.image_report import ImageReportRepository
    from upgrader.fleet.inventory import InventoryRepository
    from upgrader.fleet.ring_labels import RingLabelRule
    from upgrader.fleet.sync_launcher import LambdaSyncLauncher
    from upgrader.fleet.syncs import SyncRepository
    from upgrader.images.distribution import RegistryCredentials
    from upgrader.images.registry import ImageRegistry
    from upgrader.infra.db import Database
    from upgrader.infra.workflow import StepFunctionsGateway
    from upgrader.notifications.publisher import EventBridgeChannel, OutboxRepository
    from upgrader.notifications.slack import SlackChannel
    from upgrader.promotion.evidence_repository import EvidenceRepository
    from upgrader.promotion.gate import PromotionGate
    from upgrader.promotion.rings import RingOrder
    from upgrader.promotion.rule_repository import PromotionRuleRepository
    from upgrader.rollout.compatibility import RuleRepository
    from upgrader.rollout.halts import WindowRelease
    from upgrader.rollout.helm_output import HelmOutputRepository
    from upgrader.rollout.image_recheck import ImageMoveRepository
    from upgrader.rollout.leases import LeaseRepository
    from upgrader.rollout.notices import NoticeRepository
    from upgrader.rollout.reconciliation import ReconcileRepository
    from upgrader.rollout.resumes import ResumeRepository
    from upgrader.rollout.rollbacks import RollbackRepository
    from upgrader.rollout.run_repository import RunRepository
    from upgrader.rollout.upgrade_repository import UpgradeRepository
    from upgrader.rollout.windows import Clock, WindowRepository


@lru_cache(maxsize=1)
def database() -> Database:
    from upgrader.infra.db import database_for

    return database_for(get_settings())


@lru_cache(maxsize=1)
def repository() -> UpgradeRepository:
    from upgrader.rollout.upgrade_repository import UpgradeRepository

    return UpgradeRepository(database())


@lru_cache(maxsize=1)
def runs() -> RunRepository:
    from upgrader.rollout.run_repository import RunRepository

    return RunRepository(database())


@lru_cache(maxsize=1)
def leases() -> LeaseRepository:
    from upgrader.rollout.leases import LeaseRepository

    return LeaseRepository(database())


@lru_cache(maxsize=1)
def reconcile() -> ReconcileRepository:
    from upgrader.rollout.reconciliation import ReconcileRepository

    return ReconcileRepository(database())


@lru_cache(maxsize=1)
def resumes() -> ResumeRepository:
    from upgrader.rollout.resumes import ResumeRepository

    return ResumeRepository(database())


@lru_cache(maxsize=1)
def rollbacks() -> RollbackRepository:
    from upgrader.rollout.rollbacks import RollbackRepository

    return RollbackRepository(database())


@lru_cache(maxsize=1)
def inventory() -> InventoryRepository:
    from upgrader.fleet.inventory import InventoryRepository

    return InventoryRepository(database())


@lru_cache(maxsize=1)
def image_report() -> ImageReportRepository:
    from upgrader.fleet.image_report import ImageReportRepository

    return ImageReportRepository(database())


@lru_cache(maxsize=1)
def rules() -> RuleRepository:
    from upgrader.rollout.compatibility import RuleRepository

    return RuleRepository(database())


@lru_cache(maxsize=1)
def windows() -> WindowRepository:
    from upgrader.rollout.windows import WindowRepository

    return WindowRepository(database())


@lru_cache(maxsize=1)
def image_moves() -> ImageMoveRepository:
    from upgrader.rollout.image_recheck import ImageMoveRepository

    return ImageMoveRepository(database())


@lru_cache(maxsize=1)
def clock() -> Clock:
    """The time maintenance windows are decided at (tests replace it with a controllable clock)."""
    from upgrader.rollout.windows import SystemClock

    return SystemClock()


def window_recheck_seconds() -> int:
    """How long a run waits for its customers' windows before it looks again (WINDOW_RECHECK_SECONDS, >= 1)."""
    from upgrader.rollout.windows import DEFAULT_RECHECK_SECONDS

    return max(1, int(os.environ.get("WINDOW_RECHECK_SECONDS") or DEFAULT_RECHECK_SECONDS))


@lru_cache(maxsize=1)
def helm_outputs() -> HelmOutputRepository:
    from upgrader.rollout.helm_output import HelmOutputRepository

    return HelmOutputRepository(database())


@lru_cache(maxsize=1)
def syncs() -> SyncRepository:
    from upgrader.fleet.syncs import SyncRepository

    return SyncRepository(database())


@lru_cache(maxsize=1)
def idempotency() -> IdempotencyRepository:
    from upgrader.api.idempotency import IdempotencyRepository

    return IdempotencyRepository(database())


@lru_cache(maxsize=1)
def discovery_rules() -> DiscoveryRules:
    """Built at cold start: rules that cannot work fail here, with the setting named."""
    from upgrader.fleet.discovery_rules import DiscoveryRules, RuleError
    from upgrader.infra.settings import SettingsError

    try:
        return DiscoveryRules.from_settings(get_settings())
    except RuleError as exc:
        raise SettingsError(f"invalid discovery rules (CUSTOMER_ID_TEMPLATE, CUSTOMER_RELEASE_TEMPLATE or "
                            f"CUSTOMER_NAMESPACE_PATTERN): {exc}") from exc  # fmt: skip


@lru_cache(maxsize=1)
def ring_order() -> RingOrder:
    """The rings, first to last (RING_ORDER): checked at cold start, a bad order names the setting."""
    from upgrader.infra.errors import InvalidValue
    from upgrader.infra.settings import SettingsError
    from upgrader.promotion.rings import RingOrder

    try:
        return RingOrder.parse(get_settings().ring_order, "RING_ORDER")
    except InvalidValue as exc:
        raise SettingsError(f"invalid RING_ORDER: {exc}") from exc


@lru_cache(maxsize=1)
def ring_labels() -> RingLabelRule:
    """Discovery's ring rule (CUSTOMER_RING_LABEL over RING_ORDER), checked at cold start."""
    from upgrader.fleet.discovery_rules import RuleError
    from upgrader.fleet.ring_labels import RingLabelRule
    from upgrader.infra.settings import SettingsError

    try:
        return RingLabelRule(get_settings().customer_ring_label, ring_order())
    except RuleError as exc:
        raise SettingsError(f"invalid CUSTOMER_RING_LABEL: {exc}") from exc


@lru_cache(maxsize=1)
def evidence() -> EvidenceRepository:
    from upgrader.promotion.evidence_repository import EvidenceRepository

    return EvidenceRepository(database())


@lru_cache(maxsize=1)
def promotion_rules() -> PromotionRuleRepository:
    from upgrader.promotion.rule_repository import PromotionRuleRepository

    return PromotionRuleRepository(database())


def promotion_gate() -> PromotionGate:
    """The promotion gate of deploys and plans: the ring order, the evidence, the rules."""
    from upgrader.promotion.gate import PromotionGate

    return PromotionGate(ring_order(), evidence(), promotion_rules())


def fleet_reader() -> FleetReader:
    """A new reader per sync (it counts that sync's requests), as the reader identity; loads the client."""
    from upgrader.cluster.access import build_fleet_reader
    from upgrader.cluster.types import ClusterConfig

    return build_fleet_reader(ClusterConfig.from_settings(get_settings(), reader=True))


@lru_cache(maxsize=1)
def sync_launcher() -> LambdaSyncLauncher:
    from upgrader.fleet.sync_launcher import LambdaSyncLauncher

    settings = get_settings()
    settings.require("sync_function_name")
    return LambdaSyncLauncher(aws_client("lambda", settings), str(settings.sync_function_name))


@lru_cache(maxsize=1)
def cluster() -> ClusterGateway:
    """The Kubernetes adapter as the jobs identity (start_helm_job, check_helm_job, reconcile_runs);
    importing it loads the kubernetes client (cluster workers only)."""
    from upgrader.cluster.access import build_cluster_gateway
    from upgrader.cluster.types import ClusterConfig

    return build_cluster_gateway(ClusterConfig.from_settings(get_settings()))


@lru_cache(maxsize=1)
def reader_cluster() -> ClusterGateway:
    """The Kubernetes adapter as the reader identity (check_rollout): it reads releases and workloads and
    may create nothing (k8s/README.md). The same adapter as `cluster()`; only the identity differs."""
    from upgrader.cluster.access import build_cluster_gateway
    from upgrader.cluster.types import ClusterConfig

    return build_cluster_gateway(ClusterConfig.from_settings(get_settings(), reader=True))


@lru_cache(maxsize=1)
def outbox() -> OutboxRepository:
    from upgrader.notifications.publisher import OutboxRepository

    return OutboxRepository(database())


@lru_cache(maxsize=1)
def notices() -> NoticeRepository:
    from upgrader.rollout.notices import NoticeRepository

    return NoticeRepository(database())


@lru_cache(maxsize=1)
def event_channel() -> EventBridgeChannel:
    from upgrader.notifications.publisher import EventBridgeChannel

    settings = get_settings()
    settings.require("event_bus_name")
    return EventBridgeChannel(aws_client("events", settings), str(settings.event_bus_name))


@lru_cache(maxsize=1)
def slack_channel() -> SlackChannel:
    """Slack, as the settings describe it: the bot token read once per cold start from Secrets Manager."""
    from upgrader.notifications.slack import Links, SlackChannel, SlackWebApi, read_bot_token

    settings = get_settings()
    settings.require("slack_token_secret_arn", "slack_channel")
    token = read_bot_token(aws_client("secretsmanager", settings), str(settings.slack_token_secret_arn))
    links = Links(api_base_url=settings.api_base_url, state_machine_arn=settings.upgrade_state_machine_arn,
                  region=settings.aws_region)  # fmt: skip
    return SlackChannel(api=SlackWebApi(settings.slack_api_url, lambda: token), database=database,
                        channel=str(settings.slack_channel), links=links, min_interval=settings.slack_min_update_seconds,
                        components=settings.notify_components, severities=settings.notify_severities)  # fmt: skip


@lru_cache(maxsize=1)
def workflow() -> StepFunctionsGateway:
    from upgrader.infra.workflow import StepFunctionsGateway

    settings = get_settings()
    settings.require("upgrade_state_machine_arn")
    return StepFunctionsGateway(aws_client("stepfunctions", settings), str(settings.upgrade_state_machine_arn))


def halt_window_release() -> WindowRelease:
    """How a worker that halts an upgrade (failure budget) ends its runs' waits for maintenance windows:
    SendTaskFailure `UpgradeHalted` with each token. The Step Functions client is built only then."""
    from upgrader.rollout.windows import release_window_waits

    return lambda tokens, reason: release_window_waits(tokens, reason, workflow=workflow(), error="UpgradeHalted")


def image_registry() -> ImageRegistry:
    """The registries the images' pre-flight asks (docs/images.md), new for each deploy or plan (its tokens
    live as long as the request): ECR's hosts through ECR with the function's role, every other host through
    the distribution API with the credentials of IMAGE_REGISTRY_SECRET_ARN (read once per cold start)."""
    from upgrader.images.distribution import DistributionRegistry
    from upgrader.images.ecr import EcrRegions, is_ecr_host
    from upgrader.images.registry import RegistryRouter

    settings = get_settings()
    distribution = DistributionRegistry(registry_credentials(), timeout=settings.image_registry_timeout_seconds)
    ecr = EcrRegions(lambda region: aws_client("ecr", settings.model_copy(update={"aws_region": region or None})))
    return RegistryRouter(distribution, by_rule=[(is_ecr_host, ecr)])


@lru_cache(maxsize=1)
def registry_credentials() -> dict[str, RegistryCredentials]:
    """Basic credentials per registry host from IMAGE_REGISTRY_SECRET_ARN ({} without it)."""
    from upgrader.images.credentials import read_registry_credentials

    settings = get_settings()
    if not settings.image_registry_secret_arn:
        return {}
    return read_registry_credentials(aws_client("secretsmanager", settings), settings.image_registry_secret_arn)


@lru_cache(maxsize=1)
def s3_client() -> Any:
    return aws_client("s3", get_settings())


def aws_client(service: str, settings: Settings) -> Any:
    import boto3  # imported lazily: API functions that never call AWS skip its import cost

    return boto3.client(service, region_name=settings.aws_region)  # type: ignore[call-overload]


def reset() -> None:
    """Forget every cached adapter and the settings (tests and the local stack)."""
    if database.cache_info().currsize:
        database().close()
    for cached in (database, repository, runs, leases, reconcile, resumes, rollbacks, cluster, reader_cluster, workflow, s3_client,
                   inventory, rules, windows, clock, helm_outputs, syncs, idempotency, discovery_rules, sync_launcher, outbox, event_channel, slack_channel, notices,
                   ring_order, ring_labels, evidence, promotion_rules, registry_credentials, image_report, get_settings):  # fmt: skip
        clear = getattr(cached, "cache_clear", None)
        if clear is not None:
            clear()
