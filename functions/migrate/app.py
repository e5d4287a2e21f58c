"""Runs the SQL migrations at deploy time (a CloudFormation custom resource)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader.db import resolve_conninfo
from upgrader.migrate import apply_migrations
from upgrader.settings import get_settings

logger = Logger()


def run(event: dict[str, Any]) -> dict[str, Any]:
    """Apply migrations on Create/Update; never drop anything on Delete."""
    if event.get("RequestType") == "Delete":
        return {"Applied": ""}
    applied = apply_migrations(resolve_conninfo(get_settings()))
    logger.info("migrations applied", extra={"applied": applied})
    return {"Applied": ",".join(applied)}


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    from cfnresponse_min import send  # local module: the tiny CloudFormation response protocol

    try:
        data = run(event)
        send(event, context, "SUCCESS", data)
    except Exception as exc:  # report every failure to CloudFormation, or the stack hangs for an hour
        logger.exception("migration failed")
        send(event, context, "FAILED", {}, reason=f"{type(exc).__name__}: {exc}"[:500])
