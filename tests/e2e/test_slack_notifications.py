"""Slack, end to end: the real state machine and handlers, the outbox drained to the real notifier, which
calls a local stand-in of the Slack Web API over HTTP (the stand-in checks every call)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from upgrader import factory
from upgrader.notifications.slack import Links, SlackChannel, SlackWebApi

from tests.api.helpers import continue_, control, deploy
from tests.e2e.conftest import Stack
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.runtime import LocalRuntime
from upgradectl.local.slack_standin import SlackStandIn

pytestmark = pytest.mark.e2e
INTERVAL = 0.3


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token="xoxb-test") as standin:
        yield standin


def _channel(standin: SlackStandIn, token: list[str], **options: Any) -> SlackChannel:
    return SlackChannel(api=SlackWebApi(standin.url, lambda: token[0], pause=lambda s: None), database=factory.database,
                        channel="#upgrades", links=Links(api_base_url="http://localhost:3100"),
                        min_interval=INTERVAL, **options)  # fmt: skip


@pytest.fixture
def token() -> list[str]:
    return ["xoxb-test"]


@pytest.fixture
def notified(env: dict[str, str], cluster: SimulatedCluster, database_url: str, slack: SlackStandIn,
             token: list[str]) -> Iterator[Stack]:  # fmt: skip
    with LocalRuntime(database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file), kube_reader_token_file=str(cluster.reader_token_file),
                      poll_seconds=0, publish_seconds=0.05, event_channels=[_channel(slack, token)]) as runtime:  # fmt: skip
        yield Stack(runtime, cluster)


def _all_sent(sql: Any) -> bool:
    return not sql("SELECT 1 FROM event_outbox WHERE sent_at IS NULL")


def test_one_message_per_upgrade_updated_in_place_across_a_canary(notified, make_customers, slack, sql):
    ids = make_customers(10)
    notified.cluster.fail_customers.add(ids[9])  # one failure in the second wave (within its budget)
    started = deploy(
        component="api", version="v2.0.0", strategy="canary", canaryPercent=20, failureThreshold={"count": 1}
    )
    uid = started["upgradeId"]
    notified.wait_for_status(uid, lambda s: s["status"] == "awaiting_continue")
    notified.wait_for(lambda: any("waits for your go-ahead" in m["text"] for m in slack.snapshot()))
    notified.wait_for(lambda: any("awaiting continue" in m["text"] for m in slack.top_level()))
    waiting = slack.top_level()
    assert len(waiting) == 1 and "awaiting continue" in waiting[0]["text"]
    assert f"`upgrade-customers continue {uid}`" in waiting[0]["text"]
    assert f"http://localhost:3100/api/upgrades/{uid}/status" in waiting[0]["text"]

    assert continue_(uid)[0] == 200
    assert notified.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    notified.wait_for(lambda: _all_sent(sql), timeout=60)

    top = slack.top_level()
    assert len(top) == 1, top  # never reposted
    message = top[0]
    assert "completed with failures" in message["text"] and "9 completed · 1 failed" in message["text"]
    assert "Continued by" in message["text"] and "upgrade-customers continue" not in message["text"]
    assert message["updates"] >= 2
    replies = [m for m in slack.snapshot() if m["thread_ts"] == message["ts"]]
    texts = sorted(r["text"] for r in replies)
    # only what needs attention: the gate, the failure, the wave at half its budget, the end with failures
    assert len(texts) == 4, texts
    assert any("go-ahead" in t for t in texts) and any(ids[9] in t for t in texts)
    assert any("failure budget 50% used" in t for t in texts) and any("Finished completed with failures" in t
                                                                      for t in texts)  # fmt: skip
    assert slack.problems == []
    # every update went to the one message, and never two within the rate limit
    posts = [c for c in slack.calls if c["method"] == "chat.postMessage" and "thread_ts" not in c["payload"]]
    updates = [c for c in slack.calls if c["method"] == "chat.update"]
    assert len(posts) == 1 and {c["payload"]["ts"] for c in updates} == {message["ts"]}
    times = [c["at"] for c in [posts[0], *updates]]
    assert all(later - earlier >= INTERVAL * 0.9 for earlier, later in zip(times, times[1:], strict=False))


def test_a_bad_token_says_so_and_loses_nothing(env, cluster, database_url, make_customers, slack, sql, caplog):
    caplog.set_level(logging.ERROR, logger="upgrade-local.events")
    token = ["xoxb-revoked"]
    with LocalRuntime(database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file), kube_reader_token_file=str(cluster.reader_token_file),
                      poll_seconds=0, event_channels=[_channel(slack, token)]) as runtime:  # fmt: skip
        make_customers(3)
        started = deploy(component="dashboard", version="v2.0.0", strategy="canary", canaryPercent=30)
        stack = Stack(runtime, cluster)
        stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
        control("abort", started["upgradeId"], {"reason": "stop"})
        assert runtime.wait(started["jobId"])["status"] == "SUCCEEDED"
        result = runtime.publish()
        assert result["failed"] >= 1 and "invalid_auth (the bot token is wrong or revoked" in result["errors"][0]
        assert "could not deliver event" in caplog.text and "invalid_auth" in caplog.text
        assert slack.snapshot() == []
        token[0] = "xoxb-test"  # the token is fixed
        stack.wait_for(lambda: runtime.publish()["sent"] == 0 and _all_sent(sql), timeout=60)
    top = slack.top_level()
    assert len(top) == 1 and "aborted" in top[0]["text"]
    assert len([m for m in slack.snapshot() if m["thread_ts"]]) == 2  # the gate, the abort: once each


def test_subscriptions_filter_by_component_and_severity(notified_filtered, make_customers, slack, sql):
    make_customers(4)
    api = deploy(component="api", version="v2.0.0", strategy="all")
    assert notified_filtered.wait_execution(api["jobId"])["status"] == "SUCCEEDED"
    notified_filtered.cluster.fail_customers.add("cust_0001")
    dashboard = deploy(component="dashboard", version="v2.0.0", strategy="all", failureThreshold={"count": 2})
    assert notified_filtered.wait_execution(dashboard["jobId"])["status"] == "SUCCEEDED"
    notified_filtered.wait_for(lambda: _all_sent(sql), timeout=60)
    top = slack.top_level()
    assert len(top) == 1 and "dashboard" in top[0]["text"]  # the api upgrade is not subscribed
    assert [m for m in slack.snapshot() if m["thread_ts"]] == []  # failures are "attention": not subscribed


@pytest.fixture
def notified_filtered(env: dict[str, str], cluster: SimulatedCluster, database_url: str, slack: SlackStandIn,
                      token: list[str]) -> Iterator[Stack]:  # fmt: skip
    channel = _channel(slack, token, components=["dashboard"], severities=["critical"])
    with LocalRuntime(database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file), kube_reader_token_file=str(cluster.reader_token_file),
                      poll_seconds=0, publish_seconds=0.05, event_channels=[channel]) as runtime:  # fmt: skip
        yield Stack(runtime, cluster)
