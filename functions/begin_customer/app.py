"""Child step 1: claim the customer's log row (or skip it when halted or already done; or, its maintenance
window closed since its slice was prepared, defer it to a later slice)."""

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
    return orchestration.begin_customer(event, runs=factory.runs(), windows=factory.windows(),
                                        now=factory.clock().now())  # fmt: skip
