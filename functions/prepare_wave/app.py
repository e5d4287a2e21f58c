"""Before each slice of a wave: write its S3 manifest (the Distributed Map's items: the wave's customers
that may start now; with maintenance windows, those whose window is closed wait for a later slice). Before an
upgrade's wave, the tags its customers were pinned for are resolved again (a moved tag is reported)."""

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
        images=_recheck_images,
    )  # fmt: skip


def _recheck_images(upgrade_id: int, run_name: str, wave: int) -> dict[str, Any]:
    """The wave's pinned image tags resolved again; a moved one recorded with its event (upgrader.rollout.image_recheck)."""
    from upgrader.rollout.image_recheck import recheck_wave

    mode = get_settings().image_preflight
    if mode == "off":
        return {"preflight": mode, "checked": 0, "moved": [], "error": None}
    found = {"preflight": mode, **recheck_wave(upgrade_id, run_name, wave, moves=factory.image_moves(),
                                                registry=factory.image_registry)}  # fmt: skip
    if found.get("error"):
        logger.warning("image tags not re-checked before the wave; its pinned digests are installed", extra=found)
    for moved in found["moved"]:
        logger.warning("an image tag moved during the rollout; the wave installs the pinned digest", extra=moved)
    return found


def _bucket() -> str:
    settings = get_settings()
    settings.require("manifest_bucket")
    return str(settings.manifest_bucket)
