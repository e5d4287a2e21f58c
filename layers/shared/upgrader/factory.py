"""Builds the adapters once per cold start (and lets tests and the local stack swap them)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from upgrader.cluster.types import ClusterGateway
from upgrader.db import Database, database_for
from upgrader.leases import LeaseRepository
from upgrader.reconciliation import ReconcileRepository
from upgrader.repository import RunRepository, UpgradeRepository
from upgrader.resumes import ResumeRepository
from upgrader.rollbacks import RollbackRepository
from upgrader.settings import Settings, get_settings
from upgrader.workflow import StepFunctionsGateway


@lru_cache(maxsize=1)
def database() -> Database:
    return database_for(get_settings())


@lru_cache(maxsize=1)
def repository() -> UpgradeRepository:
    return UpgradeRepository(database())


@lru_cache(maxsize=1)
def runs() -> RunRepository:
    return RunRepository(database())


@lru_cache(maxsize=1)
def leases() -> LeaseRepository:
    return LeaseRepository(database())


@lru_cache(maxsize=1)
def reconcile() -> ReconcileRepository:
    return ReconcileRepository(database())


@lru_cache(maxsize=1)
def resumes() -> ResumeRepository:
    return ResumeRepository(database())


@lru_cache(maxsize=1)
def rollbacks() -> RollbackRepository:
    return RollbackRepository(database())


@lru_cache(maxsize=1)
def cluster() -> ClusterGateway:
    """The Kubernetes adapter; importing it loads the kubernetes client (cluster workers only)."""
    from upgrader.cluster.access import build_cluster_gateway
    from upgrader.cluster.types import ClusterConfig

    return build_cluster_gateway(ClusterConfig.from_settings(get_settings()))


@lru_cache(maxsize=1)
def workflow() -> StepFunctionsGateway:
    settings = get_settings()
    settings.require("upgrade_state_machine_arn")
    return StepFunctionsGateway(aws_client("stepfunctions", settings), str(settings.upgrade_state_machine_arn))


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
    for cached in (database, repository, runs, leases, reconcile, resumes, rollbacks, cluster, workflow, s3_client,
                   get_settings):  # fmt: skip
        clear = getattr(cached, "cache_clear", None)
        if clear is not None:
            clear()
