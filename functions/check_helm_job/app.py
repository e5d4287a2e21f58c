"""Child step 3 (looped): read the Helm Job's state, and its pod log when it has finished (written, redacted,
to PostgreSQL here: never returned into the execution's state)."""

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
    return orchestration.check_helm_job(event, cluster=factory.cluster(), outputs=factory.helm_outputs())
