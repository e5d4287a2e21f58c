"""POST /api/customers/sync: start an inventory sync in the background and answer at once."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.api import customers
from upgrader.api.http import build_resolver, caller_identity
from upgrader.contract.customer_models import SyncStarted

logger = Logger()
router = APIGatewayRouter()
app = build_resolver()


@router.post(
    "/api/customers/sync",
    status_code=202,
    summary="Sync the customer inventory with the cluster now (runs in the background)",
    responses={202: {"description": "sync started, or the one already pending or running"}},
)
def start_sync() -> SyncStarted:
    who = caller_identity(router)
    result = customers.request_sync(requested_by=who, syncs=factory.syncs(), launcher=factory.sync_launcher())
    logger.info("sync requested", extra={"sync_id": result.sync_id, "by": who, "already": result.already_running})
    return result


app.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
