"""The Prometheus provider against a REAL Prometheus (Debian's package) on 127.0.0.1, scraping the simulated
customers' workload metrics every second: instant and range queries, a customer id that tries to inject
PromQL, several series, a server that answers 500, times out or is down, SigV4 and bearer headers; then the
whole chain: a bad version on 4 of 12 customers is failed by the comparison with the 8 still on the old one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.judgement import judge
from upgrader.analysis.providers.prometheus import PrometheusProvider, sigv4_signer
from upgrader.analysis.providers.web import FetchError

from tests.analysis.conftest import target_for
from tests.support.tools import require_tool
from upgradectl.local.prometheus_server import PrometheusServer
from upgradectl.local.workload_metrics import MetricsServer, Workload, WorkloadMetrics

CUSTOMERS = [f"cust_{i:03d}" for i in range(12)]
BAD = set(CUSTOMERS[:4])
ERROR_RATIO = (
    'sum(increase(app_errors_total{customer="{{customerId}}",version="{{version}}"}[{{since}}])) / '
    'sum(increase(app_requests_total{customer="{{customerId}}",version="{{version}}"}[{{since}}]))'
)


class Fleet:
    def __init__(self) -> None:
        self.versions = dict.fromkeys(CUSTOMERS, "v1.0.0")

    def running(self) -> list[Workload]:
        return [Workload(c, f"customer-{c}", "api", v) for c, v in self.versions.items()]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Fleet, PrometheusServer]]:
    binary = require_tool("prometheus", "/usr/bin/prometheus")
    fleet = Fleet()
    metrics = WorkloadMetrics(fleet.running, seed=3, requests_per_second=400)
    server = MetricsServer(metrics).start()
    prometheus = PrometheusServer(binary, [server.address], scrape_seconds=1).start()
    try:
        yield fleet, prometheus
    finally:
        prometheus.stop()
        server.stop()


def wait_for(condition: Any, what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {seconds} s")


def check(query: str, judgement: dict[str, Any] | None = None) -> AnalysisCheck:
    return AnalysisCheck.model_validate({
        "name": "m", "provider": "prometheus", "query": query,
        "failureCondition": {"op": ">", "value": 1e12}, "judgement": judgement or {"kind": "threshold"},
    })  # fmt: skip


def series_count(prometheus: PrometheusServer) -> int:
    try:
        data = PrometheusProvider(prometheus.url, timeout=5)._get("query", {"query": "count(app_requests_total)"})
        return int(float(data["result"][0]["value"][1])) if data["result"] else 0
    except FetchError:
        return 0


def test_an_instant_query_measures_one_customer(stack):
    fleet, prometheus = stack
    wait_for(lambda: series_count(prometheus) >= len(CUSTOMERS), "series of every customer")
    provider = PrometheusProvider(prometheus.url, timeout=5)
    found = provider.measure(check('sum(app_requests_total{customer="{{customerId}}"})'), target_for("cust_001"))
    assert found.error is None and found.value is not None and found.value > 0
    assert found.query == 'sum(app_requests_total{customer="cust_001"})'


def test_a_range_query_gives_the_values_over_the_window(stack):
    fleet, prometheus = stack
    wait_for(lambda: series_count(prometheus) >= len(CUSTOMERS), "series of every customer")
    time.sleep(3)
    now = datetime.now(UTC)
    values = PrometheusProvider(prometheus.url, timeout=5).over_range(
        'sum(app_requests_total{customer="cust_002"})', now - timedelta(seconds=3), now, 1
    )
    assert len(values) >= 2 and values == sorted(values)  # a counter: never falls


def test_an_injected_customer_id_matches_no_series_instead_of_changing_the_query(stack):
    fleet, prometheus = stack
    wait_for(lambda: series_count(prometheus) >= len(CUSTOMERS), "series of every customer")
    provider = PrometheusProvider(prometheus.url, timeout=5)
    query = 'sum(app_requests_total{customer="{{customerId}}"})'
    evil = 'x"}) or vector(1) or sum(app_requests_total{customer="'
    found = provider.measure(check(query), target_for(evil))
    # Unescaped, this would answer vector(1) = 1: escaped, it is one label value that no series has.
    assert (found.value, found.error) == (None, "no data")
    regex = provider.measure(check('sum(app_requests_total{customer=~"{{customerId}}"})'), target_for(".*"))
    assert (regex.value, regex.error) == (None, "no data")


def test_a_query_answering_several_series_is_an_error(stack):
    fleet, prometheus = stack
    wait_for(lambda: series_count(prometheus) >= len(CUSTOMERS), "series of every customer")
    found = PrometheusProvider(prometheus.url, timeout=5).measure(check("app_requests_total"), target_for("c"))
    assert found.value is None and found.error is not None and "series" in found.error


def test_a_query_the_server_cannot_parse_is_an_error(stack):
    _, prometheus = stack
    with pytest.raises(FetchError, match="HTTP 400"):
        PrometheusProvider(prometheus.url, timeout=5).instant("sum(rate(x[5m]) by", datetime.now(UTC))


def test_a_bad_version_on_the_canary_fails_the_comparison_with_the_control_group(stack):
    fleet, prometheus = stack
    wait_for(lambda: series_count(prometheus) >= len(CUSTOMERS), "series of every customer")
    for customer in BAD:
        fleet.versions[customer] = "v1.1.0-bad"
    upgraded_at = time.time()
    wait_for(lambda: series_count(prometheus) >= len(CUSTOMERS) + len(BAD), "the new version's series")
    time.sleep(12)  # traffic on the new version, scraped
    now = datetime.now(UTC)
    window = int(time.time() - upgraded_at) - 1
    provider = PrometheusProvider(prometheus.url, timeout=5)
    comparison = check(ERROR_RATIO, {"kind": "comparison", "toleratedDegradation": 0.25, "confidence": 0.95})
    measurements = [
        provider.measure(
            comparison, target_for(c, "upgraded" if c in BAD else "control", fleet.versions[c], window, now)
        )
        for c in CUSTOMERS
    ]
    assert [m.error for m in measurements] == [None] * len(CUSTOMERS), measurements
    verdict = judge(comparison, measurements)
    assert verdict.verdict == "fail", verdict
    assert min(verdict.evidence["upgraded"].values()) > max(verdict.evidence["control"].values())


# --- the server misbehaving: the scripted server stands in for Prometheus ---------------------------------


def answer(value: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, value]}]}}


@pytest.mark.parametrize(
    ("status", "body", "delay", "error"),
    [
        (500, answer("0"), 0.0, "HTTP 500"),
        (200, {"status": "error", "errorType": "timeout"}, 0.0, "Prometheus answered no success (timeout)"),
        (200, answer("NaN"), 0.0, "no data (NaN or not a number)"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": []}}, 0.0, "no data"),
        (200, answer("0"), 3.0, "timeout after 0.5 s"),
    ],
)
def test_a_misbehaving_server_is_inconclusive_never_a_pass(scripted_server, status, body, delay, error):
    scripted_server.answer("/api/v1/query", status, body, delay=delay)
    threshold = check("sum(up)")
    found = PrometheusProvider(scripted_server.url, timeout=0.5).measure(threshold, target_for("c"))
    assert (found.value, found.error) == (None, error)
    assert judge(threshold, [found]).verdict == "inconclusive"


def test_a_server_that_is_down_is_inconclusive(closed_port):
    found = PrometheusProvider(f"http://127.0.0.1:{closed_port}", timeout=1).measure(check("sum(up)"), target_for("c"))
    assert found.value is None and (found.error or "").startswith("unreachable")


def test_the_bearer_token_is_sent_and_never_stored(scripted_server):
    scripted_server.answer("/api/v1/query", 200, answer("0.5"))
    found = PrometheusProvider(scripted_server.url, bearer_token="s3cr3t", timeout=2).measure(
        check("sum(up)"), target_for("c")
    )
    assert found.value == 0.5
    assert scripted_server.requests[-1][1]["Authorization"] == "Bearer s3cr3t"
    assert "s3cr3t" not in json.dumps([found.query, found.error])


def test_sigv4_signs_the_query_for_amazon_managed_prometheus(scripted_server):
    scripted_server.answer("/workspaces/ws-1/api/v1/query", 200, answer("2"))
    session = botocore.session.Session()
    session.set_credentials("AKIDEXAMPLE", "secret")
    provider = PrometheusProvider(scripted_server.url + "/workspaces/ws-1", signer=sigv4_signer("eu-west-1", session))
    assert provider.measure(check("sum(up)"), target_for("c")).value == 2.0
    headers = scripted_server.requests[-1][1]
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/aps/aws4_request" in headers["Authorization"]
    assert "X-Amz-Date" in headers
