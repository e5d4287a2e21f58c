"""Child last step: record the outcome, the counter and the customer's version, once. A failure over the
wave's budget halts the upgrade; a run waiting for its customers' maintenance windows goes on at once."""

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
    return orchestration.finish_customer(event, runs=factory.runs(), release_windows=factory.halt_window_release())
