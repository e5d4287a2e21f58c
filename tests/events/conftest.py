from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

BUS = "customer-upgrades-events"


class Bus:
    """A real (moto) EventBridge custom bus whose rule forwards every event of ours to an SQS queue:
    what a subscriber would receive."""

    def __init__(self) -> None:
        self.client = boto3.client("events", region_name="us-east-1")
        self.client.create_event_bus(Name=BUS)
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.queue = self.sqs.create_queue(QueueName="subscriber")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.client.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["customer-upgrades"]}))
        self.client.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
        self.received: list[dict[str, Any]] = []

    def receive(self) -> list[dict[str, Any]]:
        """Everything delivered so far (in arrival order)."""
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return self.received
            for message in got:
                self.received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def bus(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    with mock_aws():
        from upgrader import factory

        factory.reset()
        yield Bus()
