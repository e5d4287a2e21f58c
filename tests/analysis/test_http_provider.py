"""The HTTP provider against a real local server: a number read at a JSON path, each value of the URL
percent-encoded, and every misbehaviour (down, 5xx, timeout, not JSON, no such path) a measurement
without a value that the judgement turns into inconclusive."""

from __future__ import annotations

import time

import pytest
from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.judgement import judge
from upgrader.analysis.providers.http import HttpProvider

from tests.analysis.conftest import target_for


def http_check(url: str, path: str = "$.data.errorRate") -> AnalysisCheck:
    return AnalysisCheck.model_validate({
        "name": "health", "provider": "http", "query": {"url": url, "jsonPath": path},
        "failureCondition": {"op": ">", "value": 0.01}, "judgement": {"kind": "threshold"},
    })  # fmt: skip


def test_a_number_is_read_at_the_json_path_of_the_customer_s_url(scripted_server):
    scripted_server.answer("/status/cust_abc123", body={"data": {"errorRate": 0.004, "other": [1]}})
    found = HttpProvider(timeout=2).measure(
        http_check(scripted_server.url + "/status/{{customerId}}"), target_for("cust_abc123")
    )
    assert (found.value, found.error) == (0.004, None)
    assert found.query == f"GET {scripted_server.url}/status/cust_abc123 $.data.errorRate"


def test_list_indexes_and_booleans_are_read(scripted_server):
    scripted_server.answer("/s", body={"checks": [{"ok": True}, {"ok": False}]})
    provider = HttpProvider(timeout=2)
    assert provider.measure(http_check(scripted_server.url + "/s", "$.checks[1].ok"), target_for("c")).value == 0.0
    assert provider.measure(http_check(scripted_server.url + "/s", "$.checks[0].ok"), target_for("c")).value == 1.0


def test_a_customer_id_cannot_change_the_url_s_path(scripted_server):
    scripted_server.answer("/status/a%2F..%2Fadmin%3Fx", body={"data": {"errorRate": 0}})
    found = HttpProvider(timeout=2).measure(
        http_check(scripted_server.url + "/status/{{customerId}}"), target_for("a/../admin?x")
    )
    assert found.value == 0.0
    assert scripted_server.requests[-1][0] == "/status/a%2F..%2Fadmin%3Fx"


@pytest.mark.parametrize(
    ("route", "status", "raw", "delay", "error"),
    [
        ("/s", 500, b'{"data": {"errorRate": 0}}', 0.0, "HTTP 500"),  # a 5xx with a passing body still fails to pass
        ("/s", 503, b"", 0.0, "HTTP 503"),
        ("/s", 200, b"<html>ok</html>", 0.0, "the answer is not JSON"),
        ("/s", 200, b'{"data": {}}', 0.0, "no data at $.data.errorRate"),
        ("/s", 200, b'{"data": {"errorRate": "low"}}', 0.0, "$.data.errorRate is not a number"),
        ("/s", 200, b'{"data": {"errorRate": 0}}', 3.0, "timeout after 0.5 s"),
    ],
)
def test_a_misbehaving_endpoint_is_inconclusive_never_a_pass(scripted_server, route, status, raw, delay, error):
    scripted_server.answer(route, status, raw=raw, delay=delay)
    check = http_check(scripted_server.url + route)
    began = time.monotonic()
    found = HttpProvider(timeout=0.5).measure(check, target_for("c1"))
    assert time.monotonic() - began < 2.5  # the timeout bounds the wait
    assert (found.value, found.error) == (None, error)
    assert judge(check, [found]).verdict == "inconclusive"


def test_an_endpoint_that_is_down_is_inconclusive(closed_port):
    check = http_check(f"http://127.0.0.1:{closed_port}/s")
    found = HttpProvider(timeout=1).measure(check, target_for("c1"))
    assert found.value is None and found.error is not None and found.error.startswith("unreachable")
    assert judge(check, [found]).verdict == "inconclusive"


def test_the_timeout_is_bounded():
    with pytest.raises(ValueError, match="30"):
        HttpProvider(timeout=120)


@pytest.mark.parametrize(
    ("status", "raw", "delay", "retryable"),
    [(503, b"", 0.0, True), (429, b"", 0.0, True), (200, b"{}", 3.0, True),
     (404, b"{}", 0.0, False), (200, b"<html>", 0.0, False), (200, b"{}", 0.0, False)],
)  # fmt: skip
def test_only_a_missing_answer_is_worth_another_try(scripted_server, status, raw, delay, retryable):
    scripted_server.answer("/s", status, raw=raw, delay=delay)
    found = HttpProvider(timeout=0.5).measure(http_check(scripted_server.url + "/s"), target_for("c1"))
    assert found.value is None and found.retryable is retryable


def test_an_endpoint_that_is_down_is_worth_another_try(closed_port):
    found = HttpProvider(timeout=1).measure(http_check(f"http://127.0.0.1:{closed_port}/s"), target_for("c1"))
    assert found.retryable is True
