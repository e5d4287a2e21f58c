"""The CloudWatch provider against moto's CloudWatch (GetMetricData, DescribeAlarms) and against an
endpoint that never answers: throttling, a missing alarm, no datapoint or a timeout is inconclusive."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws
from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.judgement import judge
from upgrader.analysis.providers.cloudwatch import CloudWatchProvider, cloudwatch_client

from tests.analysis.conftest import target_for

REGION = "us-east-1"


@pytest.fixture
def cloudwatch(monkeypatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield cloudwatch_client(REGION, timeout=5)


def metric_check(**judgement: Any) -> AnalysisCheck:
    return AnalysisCheck.model_validate({
        "name": "errors", "provider": "cloudwatch",
        "query": {"metricDataQueries": [{"id": "errors", "metricStat": {
            "namespace": "Customers", "metricName": "Errors", "dimensions": {"Customer": "{{customerId}}"},
            "period": 60, "stat": "Sum"}}]},
        "failureCondition": {"op": ">", "value": 10}, "judgement": judgement or {"kind": "threshold"},
    })  # fmt: skip


def alarm_check() -> AnalysisCheck:
    return AnalysisCheck.model_validate({
        "name": "alarms", "provider": "cloudwatch", "query": {"alarmNames": ["{{customerId}}-errors"]},
        "failureCondition": {"op": ">=", "value": 1}, "judgement": {"kind": "threshold"},
    })  # fmt: skip


def put(client: Any, customer: str, value: float, at: datetime) -> None:
    client.put_metric_data(Namespace="Customers", MetricData=[{
        "MetricName": "Errors", "Dimensions": [{"Name": "Customer", "Value": customer}], "Timestamp": at, "Value": value}])  # fmt: skip


def test_get_metric_data_gives_the_customer_s_latest_datapoint(cloudwatch):
    now = datetime.now(UTC)
    put(cloudwatch, "cust_a", 3, now - timedelta(minutes=3))
    put(cloudwatch, "cust_a", 25, now - timedelta(minutes=1))
    put(cloudwatch, "cust_b", 2, now - timedelta(minutes=1))
    provider, check = CloudWatchProvider(cloudwatch), metric_check()
    a, b = (provider.measure(check, target_for(c, window=600, now=now)) for c in ("cust_a", "cust_b"))
    assert (a.value, b.value) == (25.0, 2.0)
    assert "'Value': 'cust_a'" in a.query
    assert judge(check, [a, b]).verdict == "fail"


def test_no_datapoint_is_inconclusive(cloudwatch):
    found = CloudWatchProvider(cloudwatch).measure(metric_check(), target_for("cust_quiet"))
    assert (found.value, found.error) == (None, "no data")
    assert judge(metric_check(), [found]).verdict == "inconclusive"


def test_alarm_state_counts_the_alarms_in_alarm(cloudwatch):
    for customer in ("cust_a", "cust_b"):
        cloudwatch.put_metric_alarm(AlarmName=f"{customer}-errors", MetricName="Errors", Namespace="Customers",
                                    Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=10,
                                    ComparisonOperator="GreaterThanThreshold")  # fmt: skip
        cloudwatch.set_alarm_state(AlarmName=f"{customer}-errors", StateValue="OK", StateReason="test")
    cloudwatch.set_alarm_state(AlarmName="cust_b-errors", StateValue="ALARM", StateReason="test")
    provider = CloudWatchProvider(cloudwatch)
    a, b = (provider.measure(alarm_check(), target_for(c)) for c in ("cust_a", "cust_b"))
    assert (a.value, b.value) == (0.0, 1.0)
    assert judge(alarm_check(), [a, b]).verdict == "fail"
    missing = provider.measure(alarm_check(), target_for("cust_c"))
    assert (missing.value, missing.error, missing.retryable) == (None, "no such alarm: cust_c-errors", False)


def test_a_throttled_call_is_inconclusive():
    client = boto3.client("cloudwatch", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("get_metric_data", service_error_code="Throttling", http_status_code=400)
        found = CloudWatchProvider(client).measure(metric_check(), target_for("cust_a"))
    assert (found.value, found.error, found.retryable) == (None, "CloudWatch Throttling", True)
    assert judge(metric_check(), [found]).verdict == "inconclusive"


def test_an_endpoint_that_never_answers_times_out_into_inconclusive():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    client = boto3.client(
        "cloudwatch", region_name=REGION, endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 1}),
    )  # fmt: skip
    try:
        began = time.monotonic()
        found = CloudWatchProvider(client).measure(metric_check(), target_for("cust_a"))
        assert time.monotonic() - began < 5
        assert (found.value, found.error) == (None, "CloudWatch unreachable: ReadTimeoutError")
        assert judge(metric_check(), [found]).verdict == "inconclusive"
    finally:
        stop.set()
        for connection in held:
            connection.close()
        silent.close()
