"""Runs the SQL migrations at deploy time (a CloudFormation custom resource)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cfnresponse_min  # this folder's module: the tiny CloudFormation response protocol
import psycopg
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader.infra.db import resolve_conninfo
from upgrader.infra.migrate import apply_migrations
from upgrader.infra.settings import get_settings

logger = Logger()

# A freshly created RDS Proxy target needs a few minutes before it accepts connections; the function's
# timeout (300 s) leaves room to wait that long.
CONNECT_WAIT_SECONDS = 240.0
CONNECT_RETRY_SECONDS = 15.0


def run(
    event: dict[str, Any], *, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """Apply migrations on Create/Update; never drop anything on Delete."""
    if event.get("RequestType") == "Delete":
        return {"Applied": ""}
    deadline = clock() + CONNECT_WAIT_SECONDS
    while True:
        try:
            # A fresh connection string each try: an RDS IAM token is valid for 15 minutes only.
            applied = apply_migrations(resolve_conninfo(get_settings()))
            break
        except psycopg.OperationalError as exc:
            if clock() + CONNECT_RETRY_SECONDS > deadline:
                raise
            logger.warning("database not reachable yet; retrying", extra={"error": str(exc)})
            sleep(CONNECT_RETRY_SECONDS)
    logger.info("migrations applied", extra={"applied": applied})
    return {"Applied": ",".join(applied)}


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Apply the migrations, then tell CloudFormation how it went: SUCCESS or FAILED, never both.

    Delivering the answer is retried (`cfnresponse_min.send`). A SUCCESS that still cannot be
    delivered is never turned into FAILED (the migrations are applied): the invocation raises, so
    Lambda runs this asynchronous invocation again, which finds nothing left to apply and answers
    SUCCESS; failing that, CloudFormation times the resource out, without a failed update."""
    try:
        data = run(event)
    except Exception as exc:  # report every failure to CloudFormation, or the stack hangs for an hour
        logger.exception("migration failed")
        cfnresponse_min.send(event, context, "FAILED", {}, reason=f"{type(exc).__name__}: {exc}"[:500])
        return
    try:
        attempts = cfnresponse_min.send(event, context, "SUCCESS", data)
    except cfnresponse_min.ResponseNotDelivered:
        logger.exception("migrations applied, but CloudFormation did not take the SUCCESS answer; raising for a retry")
        raise
    if attempts > 1:
        logger.warning("SUCCESS delivered after retries", extra={"attempts": attempts})
