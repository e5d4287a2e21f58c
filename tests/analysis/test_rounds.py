"""A round: both cohorts measured, a provider that does not answer tried again (bounded) and then kept as
an error (inconclusive), a permanent error not retried, and a control sample stable across rounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.judgement import judge
from upgrader.analysis.providers.http import HttpProvider
from upgrader.analysis.rounds import Customer, control_sample, measure_round, targets

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def http_check(url: str) -> AnalysisCheck:
    return AnalysisCheck.model_validate({
        "name": "health", "provider": "http", "query": {"url": url + "/{{customerId}}", "jsonPath": "$.errorRate"},
        "failureCondition": {"op": ">", "value": 0.02}, "judgement": {"kind": "threshold"},
    })  # fmt: skip


def customers(prefix: str, n: int, version: str) -> list[Customer]:
    return [Customer(f"{prefix}{i}", f"customer-{prefix}{i}", version) for i in range(n)]


class Flaky:
    """Answers 503 `failures` times for each customer, then 200."""

    def __init__(self, server, failures: int) -> None:
        self.server, self.failures, self.calls = server, failures, 0

    def measure(self, check, target):
        self.calls += 1
        misses = sum(1 for path, _ in self.server.requests if path.endswith("/" + target.customer_id))
        status = 503 if misses < self.failures else 200
        self.server.answer(f"/h/{target.customer_id}", status, {"errorRate": 0.001})
        return HttpProvider(timeout=2).measure(check, target)


def test_a_provider_that_answers_503_twice_is_tried_again_and_measured(scripted_server):
    pauses: list[float] = []
    flaky = Flaky(scripted_server, failures=2)
    round_targets = targets("api", customers("u", 1, "v2"), customers("c", 1, "v1"), NOW - timedelta(minutes=5), NOW)
    found = measure_round([http_check(scripted_server.url + "/h")], round_targets, {"http": flaky},
                          attempts=3, backoff_seconds=0.5, sleep=pauses.append)  # fmt: skip
    assert [(m.customer_id, m.cohort, m.value) for m in found] == [("u0", "upgraded", 0.001), ("c0", "control", 0.001)]
    assert pauses == [0.5, 1.0, 0.5, 1.0]  # two retries each, doubling


def test_a_provider_still_down_after_its_tries_is_kept_as_an_error_and_the_gate_waits(scripted_server):
    flaky = Flaky(scripted_server, failures=10)
    check = http_check(scripted_server.url + "/h")
    round_targets = targets("api", customers("u", 1, "v2"), [], NOW - timedelta(minutes=5), NOW)
    found = measure_round([check], round_targets, {"http": flaky}, attempts=3, sleep=lambda _: None)
    assert flaky.calls == 3
    assert [(m.value, m.error) for m in found] == [(None, "HTTP 503")]
    assert judge(check, found).verdict == "inconclusive"


def test_a_permanent_error_is_not_retried(scripted_server):
    scripted_server.answer("/h/u0", 404, {"error": "no such customer"})
    calls: list[float] = []
    found = measure_round([http_check(scripted_server.url + "/h")],
                          targets("api", customers("u", 1, "v2"), [], NOW, NOW), {"http": HttpProvider(timeout=2)},
                          sleep=calls.append)  # fmt: skip
    assert (found[0].error, calls) == ("HTTP 404", [])


def test_a_check_without_its_provider_is_an_error_not_a_skip():
    check = AnalysisCheck.model_validate({"name": "p", "provider": "prometheus", "query": "sum(up)",
                                          "failureCondition": {"op": ">", "value": 1}, "judgement": {"kind": "threshold"}})  # fmt: skip
    found = measure_round([check], targets("api", customers("u", 2, "v2"), [], NOW, NOW), {})
    assert [m.error for m in found] == ["no prometheus provider configured"] * 2
    assert judge(check, found).verdict == "inconclusive"


def test_the_control_sample_is_the_same_for_an_upgrade_and_differs_between_upgrades():
    fleet = customers("c", 100, "v1")
    first = control_sample(7, fleet, 20)
    assert len(first) == 20 and first == control_sample(7, list(reversed(fleet)), 20)
    assert first != control_sample(8, fleet, 20)
    assert control_sample(7, fleet[:5], 20) == control_sample(7, fleet[:5], 5)


def test_attempts_are_bounded():
    with pytest.raises(ValueError, match="attempts"):
        measure_round([], [], {}, attempts=50)
