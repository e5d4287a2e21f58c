"""POST /api/upgrades/deploy: record an upgrade and start its state machine execution."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory, service
from upgrader.api import build_resolver, caller_identity
from upgrader.models import DeployRequest, DeployResponse
from upgrader.settings import get_settings

logger = Logger()
router = APIGatewayRouter()
app = build_resolver()


@router.post(
    "/api/upgrades/deploy",
    status_code=202,
    summary="Start an upgrade of one component on every targeted customer",
    responses={
        202: {"description": "upgrade recorded and started"},
        404: {"description": "a customerIds entry is not in the customer inventory"},
        409: {
            "description": "an upgrade of this component is already active, a targeted customer is not active, "
            "or no active customer matches the filters"
        },
    },
)
def deploy(request: Annotated[DeployRequest, Body()]) -> DeployResponse:
    result = service.deploy_upgrade(
        request,
        requested_by=caller_identity(router),
        repo=factory.repository(),
        workflow=factory.workflow(),
        settings=get_settings(),
    )
    logger.info("upgrade started", extra={"upgrade_id": result.upgradeId, "job_id": result.jobId})
    return result


app.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
