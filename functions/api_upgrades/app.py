"""GET /api/upgrades, /api/upgrades/{upgradeId}/status, /logs, /logs/{logId}/output and /analysis, POST
/api/upgrades/plan (a dry run): read from PostgreSQL only."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field
from upgrader import factory
from upgrader.api import promotions, service
from upgrader.api.http import build_resolver, caller_identity
from upgrader.contract.analysis_models import AnalysisResponse
from upgrader.contract.base import CUSTOMER_ID_PATTERN, DIGITS, UPGRADE_ID_PATTERN, VERSION_PATTERN
from upgrader.contract.models import (
    Component,
    DeployRequest,
    HelmOutputResponse,
    LogsResponse,
    StatusResponse,
    UpgradeListResponse,
    UpgradeStatus,
)
from upgrader.contract.plan_models import PlanResponse
from upgrader.contract.promotion_models import PromotionsResponse

logger = Logger()
router = APIGatewayRouter()
app = build_resolver()

LogStatus = Literal["pending", "in_progress", "completed", "failed", "skipped", "rolled_back"]
UpgradeIdPath = Annotated[str, Path(alias="upgradeId", pattern=UPGRADE_ID_PATTERN, description="upgrade id, e.g. 123")]
LogIdPath = Annotated[
    str, Path(alias="logId", pattern=UPGRADE_ID_PATTERN, description="a log entry's id (`id` in .../logs)")
]


@router.get("/api/upgrades", summary="List upgrades, newest first")
def list_upgrades(
    component: Annotated[Component | None, Query()] = None,
    status: Annotated[UpgradeStatus | None, Query()] = None,
    before: Annotated[str | None, Query(pattern=UPGRADE_ID_PATTERN, description="older than this id")] = None,
    limit: Annotated[int, Field(ge=1, le=200), DIGITS, Query()] = 50,
) -> UpgradeListResponse:
    return service.list_upgrades(
        repo=factory.repository(),
        component=component,
        status=status,
        before=int(before) if before else None,
        limit=limit,
    )


@router.get(
    "/api/upgrades/<upgradeId>/status",
    summary="Progress of one upgrade",
    responses={200: {"description": "the upgrade's progress"}, 404: {"description": "unknown upgrade"}},
)
def get_status(upgrade_id: UpgradeIdPath) -> StatusResponse:
    from upgrader.analysis.repository import AnalysisRepository

    return service.get_status(int(upgrade_id), repo=factory.repository(), windows=factory.windows(),
                              analysis=AnalysisRepository(factory.database()), moves=factory.image_moves())  # fmt: skip


@router.get(
    "/api/upgrades/<upgradeId>/analysis",
    summary="The metric analysis of one upgrade: each analysed wave's verdict with its evidence, and the measurements",
    responses={200: {"description": "verdicts (newest wave first) and measurements (newest round first, at most 500)"},
               404: {"description": "unknown upgrade"}},
)  # fmt: skip
def get_analysis(upgrade_id: UpgradeIdPath) -> AnalysisResponse:
    from upgrader.analysis.repository import AnalysisRepository
    from upgrader.api.service.analysis import get_analysis as read

    return read(int(upgrade_id), analysis=AnalysisRepository(factory.database()))


@router.get(
    "/api/upgrades/<upgradeId>/logs",
    summary="Per-customer attempts of one upgrade",
    responses={200: {"description": "one page of log entries"}, 404: {"description": "unknown upgrade"}},
)
def get_logs(
    upgrade_id: UpgradeIdPath,
    status: Annotated[LogStatus | None, Query()] = None,
    operation: Annotated[Literal["upgrade", "rollback"] | None, Query()] = None,
    customer_id: Annotated[str | None, Query(alias="customerId", pattern=CUSTOMER_ID_PATTERN)] = None,
    limit: Annotated[int, Field(ge=1, le=1000), DIGITS, Query()] = 500,
    offset: Annotated[int, Field(ge=0, le=10_000_000), DIGITS, Query()] = 0,
) -> LogsResponse:
    return service.get_logs(
        int(upgrade_id),
        repo=factory.repository(),
        status=status,
        operation=operation,
        customer_id=customer_id,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/api/upgrades/<upgradeId>/logs/<logId>/output",
    summary="The full helm output of one log entry's Jobs (redacted; behind its own permission)",
    responses={200: {"description": "the entry's helm outputs"}, 404: {"description": "unknown upgrade or entry"}},
)
def get_helm_output(upgrade_id: UpgradeIdPath, log_id: LogIdPath) -> HelmOutputResponse:
    from upgrader.infra.settings import get_settings
    from upgrader.rollout.helm_output import get_helm_output as read

    return read(int(upgrade_id), int(log_id), outputs=factory.helm_outputs(),
                retention_days=get_settings().helm_output_retention_days)  # fmt: skip


@router.post(
    "/api/upgrades/plan",
    summary="Dry run of a deploy: the waves with their customers and everyone left out, with the reason",
    responses={
        200: {"description": "the plan (nothing was started or recorded)"},
        404: {"description": "a customerIds entry is not in the customer inventory"},
        409: {"description": "a targeted customer is not active"},
        502: {"description": "the image registry refused our credentials (named) or answered a malformed manifest"},
        503: {"description": "the image registry is unreachable or failing (named)"},
    },
)
def plan(request: Annotated[DeployRequest, Body(description="the deploy request to plan")]) -> PlanResponse:
    from upgrader.infra.settings import get_settings

    return service.plan_deploy(
        request,
        repo=factory.repository(),
        inventory=factory.inventory(),
        rules=factory.rules(),
        settings=get_settings(),
        promotion=factory.promotion_gate(),
        registry=factory.image_registry,
        requested_by=caller_identity(router),
        now=factory.clock().now(),
    )


@router.get(
    "/api/promotions",
    summary="A version's path through the rings: where it may start, what carried it, what was forced",
)
def get_promotions(
    component: Annotated[Component, Query(description="the component")],
    version: Annotated[str, Query(pattern=VERSION_PATTERN, max_length=128, description="the version, e.g. v2.0.0")],
) -> PromotionsResponse:
    return promotions.promotions(component, version, gate=factory.promotion_gate(), now=factory.clock().now())


app.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
