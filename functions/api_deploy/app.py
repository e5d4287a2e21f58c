"""POST /api/upgrades/deploy: record an upgrade and start its state machine execution."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.api import service
from upgrader.api.http import build_resolver, caller_identity
from upgrader.api.idempotency import IDEMPOTENCY_KEY_PATTERN, Answer, run_once
from upgrader.contract.models import DeployRequest, DeployResponse
from upgrader.infra.settings import get_settings

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
            "no active customer is left to upgrade, or the first request with this Idempotency-Key still runs"
        },
        422: {
            "description": "invalid request, a limit exceeded, the Idempotency-Key reused with another body, or "
            "the version breaks a compatibility rule for some customers (IncompatibleVersions: listed in "
            "incompatible; skipIncompatible leaves them out), or an image is missing from the registry or named by a "
            "mutable tag (ImagesRefused: listed in problems; allowNoRollbackImage lets missing rollback images pass)"
        },
        502: {"description": "the image registry refused our credentials (named) or answered a malformed manifest"},
        503: {"description": "the image registry is unreachable or failing (named); nothing was started"},
    },
)
def deploy(
    request: Annotated[DeployRequest, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="the same key with the same body returns the first answer (no second upgrade); with "
            "another body, a 422. Letters, digits, '.', '_', ':', '-', at most 255 characters; kept 24 hours",
        ),
    ] = None,
) -> Response[DeployResponse]:
    who = caller_identity(router)
    settings = get_settings()

    def start() -> tuple[Answer, int | None]:
        result = service.deploy_upgrade(
            request,
            requested_by=who,
            repo=factory.repository(),
            inventory=factory.inventory(),
            rules=factory.rules(),
            workflow=factory.workflow(),
            settings=settings,
            promotion=factory.promotion_gate(),
            registry=factory.image_registry,
            now=factory.clock().now(),
        )
        logger.info("upgrade started", extra={"upgrade_id": result.upgrade_id, "job_id": result.job_id})
        return Answer(202, result.model_dump(mode="json")), int(result.upgrade_id)

    if idempotency_key is None:
        answer, _ = start()
    else:
        answer = run_once(
            factory.idempotency(),
            caller=who or "anonymous",
            key=idempotency_key,
            operation="deploy",
            payload=request.model_dump(mode="json"),
            ttl_seconds=settings.idempotency_ttl_seconds,
            run=start,
        )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    body = DeployResponse.model_validate(answer.body)
    return Response(answer.status_code, content_types.APPLICATION_JSON, body, headers=headers)


app.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
