"""Before each slice of a wave: write its S3 manifest (the Distributed Map's items: the wave's customers
that may start now; with maintenance windows, those whose window is closed wait for a later slice)."""

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
    logger.append_keys(upgrade_id=event.get("upgradeId"), run=event.get("runName"), wave=event.get("wave"))
    return orchestration.prepare_wave(
        event, runs=factory.runs(), s3=factory.s3_client(), bucket=event.get("bucket") or _bucket(),
        windows=factory.windows(), now=factory.clock().now(), recheck=factory.window_recheck_seconds(),
    )  # fmt: skip


def _bucket() -> str:
    settings = get_settings()
    settings.require("manifest_bucket")
    return str(settings.manifest_bucket)
