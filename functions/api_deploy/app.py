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
from upgrader.errors import InvalidRequest
from upgrader.models import DeployRequest, DeployResponse, ErrorResponse
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
        400: {
            "description": "unknown or inactive customers",
            "content": {"application/json": {"model": ErrorResponse}},
        },
        409: {"description": "an upgrade of this component is already active"},
        422: {"description": "invalid request"},
    },
)
def deploy(request: Annotated[DeployRequest, Body()]) -> DeployResponse:
    # The validator would accept a one-element JSON list as the object it holds: refuse it here.
    if not router.current_event.body.lstrip().startswith("{"):
        raise InvalidRequest("the request body must be a JSON object")
    result = service.deploy_upgrade(
        request,
        requested_by=caller_identity(router),  # type: ignore[arg-type]
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
