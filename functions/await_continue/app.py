"""Gates (.waitForTaskToken): store the task token that /continue or /abort will use: the canary's
approval and the bake between waves (on the upgrade), a run's wait for its customers' maintenance
windows (on the run: an abort or a failure-budget halt ends it)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.rollout import orchestration

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(upgrade_id=event.get("upgradeId"), run=event.get("runName"), wave=event.get("wave"))
    if event.get("gate") == "window":
        return orchestration.await_window(event, windows=factory.windows())
    return orchestration.await_continue(event, runs=factory.runs())
