"""The notify_slack Lambda: an event as EventBridge delivers it, the bot token from (moto) Secrets Manager,
the Slack Web API stand-in over HTTP. Delivered twice (EventBridge retries), it posts once."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import jsonschema_rs
import pytest
from upgrader import factory

from tests.api.helpers import deploy
from tests.support.functions import invoke
from upgradectl.event_schemas import schema_for
from upgradectl.local.slack_standin import SlackStandIn

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def slack_env(bus, monkeypatch):
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="customer-upgrades/slack-bot-token", SecretString="xoxb-test")  # fmt: skip
    with SlackStandIn(token="xoxb-test") as standin:
        monkeypatch.setenv("SLACK_CHANNEL", "#upgrades")
        monkeypatch.setenv("SLACK_TOKEN_SECRET_ARN",
                           "arn:aws:secretsmanager:us-east-1:123456789012:secret:customer-upgrades/slack-bot-token")  # fmt: skip
        monkeypatch.setenv("SLACK_API_URL", standin.url)
        monkeypatch.setenv("API_BASE_URL", "https://api.example.com/v1")
        factory.reset()
        yield standin


def test_a_gate_event_delivered_twice_posts_one_message_and_one_reply(make_customers, fake_workflow, sql, slack_env):
    make_customers(4)
    started = deploy(strategy="canary", canaryPercent=25)
    uid, name = int(started["upgradeId"]), started["jobId"]
    factory.runs().start_run(uid, name, "upgrade")
    factory.runs().store_task_token(uid, "token", 0)
    gate = [e for e in factory.outbox().events() if e.detail_type == "Upgrade Gate Waiting"][0]

    for _ in range(2):
        assert invoke("notify_slack", gate.envelope())["notified"] is True

    top = slack_env.top_level()
    assert len(top) == 1 and f"`upgrade-customers continue {uid}`" in top[0]["text"]
    assert f"https://api.example.com/v1/api/upgrades/{uid}/logs" in top[0]["text"]
    replies = [m for m in slack_env.snapshot() if m["thread_ts"] == top[0]["ts"]]
    assert len(replies) == 1 and "go-ahead" in replies[0]["text"]
    assert slack_env.problems == []


def test_the_sample_event_is_a_valid_gate_waiting_event():
    sample = json.loads((EVENTS / "notify_slack_gate_waiting.json").read_text())
    validator = jsonschema_rs.validator_for(schema_for(sample["detail-type"]), validate_formats=True)
    assert [str(e) for e in validator.iter_errors(sample["detail"])] == []
