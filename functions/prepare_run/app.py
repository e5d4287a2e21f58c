"""Step 1 of a run: mark it started and plan its waves."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.rollout import orchestration

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(upgrade_id=event.get("upgradeId"), run=event.get("runName"))
    state = orchestration.prepare_run(event, runs=factory.runs())
    state["bucket"] = event.get("bucket")
    return state
