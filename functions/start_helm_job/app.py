"""Child step 2: take the release's lease and create the customer's Helm Job (adopting it on a retry); the
maintenance window is decided again right before it (a customer that no longer fits waits again)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.infra.settings import get_settings
from upgrader.rollout import orchestration

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(upgrade_id=event.get("upgradeId"), run=event.get("runName"), log_id=event.get("logId"))
    return orchestration.start_helm_job(event, leases=factory.leases(), cluster=factory.cluster(),
                                        learn_first_wait=get_settings().learn_helm_duration,
                                        clock=factory.clock())  # fmt: skip
