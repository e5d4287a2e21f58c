"""The gate's providers give up for the round once one is down: a Prometheus-like server answering 503 is asked
for the first customer's tries only; every later customer's measurement carries the error at once (no value:
inconclusive, never a pass); a provider that answers again in between is asked as usual."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from upgrader.analysis.configured import GiveUpWhenDown
from upgrader.analysis.providers.http import HttpProvider
from upgrader.analysis.rounds import measure_round, targets

from tests.analysis.test_rounds import customers, http_check

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_provider_that_is_down_is_asked_for_one_customers_tries_only(scripted_server):
    """Breakage tried: GiveUpWhenDown never giving up: 15 requests (5 customers x 3 tries), this test failed."""
    for i in range(5):
        scripted_server.answer(f"/h/u{i}", 503, {"error": "down"})
    round_targets = targets("api", customers("u", 5, "v2"), [], NOW - timedelta(seconds=60), NOW)
    provider = GiveUpWhenDown(HttpProvider(timeout=2), limit=3)
    measured = measure_round([http_check(scripted_server.url + "/h")], round_targets, {"http": provider},
                             attempts=3, sleep=lambda _: None)  # fmt: skip
    assert len(scripted_server.requests) == 3
    assert [m.value for m in measured] == [None] * 5 and all(m.error for m in measured)
    assert "not asked: the provider did not answer" in (measured[-1].error or "")


def test_an_answer_in_between_resets_the_count(scripted_server):
    scripted_server.answer("/h/u0", 503, {"error": "down"})
    scripted_server.answer("/h/u1", 200, {"errorRate": 0.001})
    scripted_server.answer("/h/u2", 503, {"error": "down"})
    scripted_server.answer("/h/u3", 200, {"errorRate": 0.002})
    round_targets = targets("api", customers("u", 4, "v2"), [], NOW - timedelta(seconds=60), NOW)
    provider = GiveUpWhenDown(HttpProvider(timeout=2), limit=2)
    measured = measure_round([http_check(scripted_server.url + "/h")], round_targets, {"http": provider},
                             attempts=1, sleep=lambda _: None)  # fmt: skip
    assert [m.value for m in measured] == [None, 0.001, None, 0.002]
    assert len(scripted_server.requests) == 4
