"""Slack notifications: an EventBridge rule on the events bus invokes this for each lifecycle event.

One message per upgrade, updated in place; threaded replies for what needs attention (upgrader.notifications.slack).
Slack refusing the event raises, so EventBridge's retry policy delivers it again (nothing is posted twice:
what was posted is recorded in PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.infra.errors import NotificationFailed
from upgrader.infra.settings import get_settings
from upgrader.notifications.slack import event_from_envelope

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    received = event_from_envelope(event)
    logger.append_keys(event_id=received.id, detail_type=received.detail_type, upgrade_id=received.upgrade_id)
    if not get_settings().slack_channel:
        return {"eventId": received.id, "notified": False, "reason": "Slack is not configured (SlackChannel)"}
    channel = factory.slack_channel()
    if not channel.wanted(received):
        return {"eventId": received.id, "notified": False}
    [error] = channel.send([received])
    if error is not None:
        logger.error("Slack did not take the event; EventBridge retries it", extra={"error": error})
        raise NotificationFailed(error)
    return {"eventId": received.id, "notified": True}
