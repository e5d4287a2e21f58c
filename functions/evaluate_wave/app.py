"""After each slice of a wave: count the wave's results, apply the failure threshold, choose what comes
next (the wave's next slice while customers of it wait for their maintenance window)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.rollout import orchestration

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(upgrade_id=event.get("upgradeId"), run=event.get("runName"), log_id=event.get("logId"))
    return orchestration.evaluate_wave(event, runs=factory.runs(), windows=factory.windows())
