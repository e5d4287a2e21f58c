"""GET /api/queue/stats and /api/queue/jobs/{jobId}: the spec's Bull queue view, from Step Functions."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.api import service
from upgrader.api.http import build_resolver
from upgrader.contract.base import JOB_ID_PATTERN
from upgrader.contract.models import QueueJobResponse, QueueStatsResponse

logger = Logger()
router = APIGatewayRouter()
app = build_resolver()


@router.get("/api/queue/stats", summary="Executions of the upgrade state machine by state")
def queue_stats() -> QueueStatsResponse:
    return service.queue_stats(repo=factory.repository(), workflow=factory.workflow())


@router.get(
    "/api/queue/jobs/<jobId>",
    summary="One execution (the deploy response's jobId)",
    responses={200: {"description": "the execution"}, 404: {"description": "no execution of that name"}},
)
def queue_job(
    job_id: Annotated[
        str, Path(alias="jobId", pattern=JOB_ID_PATTERN, description="execution name, e.g. upgrade-123-1a2b3c4d")
    ],
) -> QueueJobResponse:
    return service.queue_job(job_id, workflow=factory.workflow())


app.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
