"""The local stack's Slack channel: the real notifier (`upgrader.notifications.slack`) against `--slack-api URL`."""

from __future__ import annotations

import os

from upgrader import factory
from upgrader.notifications.slack import Links, SlackChannel, SlackWebApi


def local_slack_channel(api_url: str, channel: str, api_base_url: str, *, min_interval: float = 1.0) -> SlackChannel:
    """Token from $SLACK_BOT_TOKEN (default xoxb-local, what the stand-in accepts); links to the local API."""
    token = os.environ.get("SLACK_BOT_TOKEN") or "xoxb-local"
    return SlackChannel(api=SlackWebApi(api_url, lambda: token), database=factory.database, channel=channel,
                        links=Links(api_base_url=api_base_url), min_interval=min_interval)  # fmt: skip
