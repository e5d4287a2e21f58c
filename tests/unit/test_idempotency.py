"""run_once's waiting and the request hash, without a database (the claims against PostgreSQL are in
tests/api/test_plan.py)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from upgrader.api.idempotency import Answer, request_hash, run_once
from upgrader.infra.errors import IdempotencyInProgress


class StillRunning:
    """The first request with the key is still running; after `answer_after` claims its answer is there."""

    def __init__(self, answer_after: int | None = None) -> None:
        self.claims = 0
        self.answer_after = answer_after

    def claim(self, caller: str, key: str, operation: str, digest: str, *, ttl_seconds: int) -> Answer | None:
        self.claims += 1
        if self.answer_after is not None and self.claims > self.answer_after:
            return Answer(202, {"upgradeId": "1"}, replayed=True)
        raise IdempotencyInProgress("the first request is still running")


def _run_once(repo: Any, sleep: Any, clock: Any) -> Answer:
    def run() -> tuple[Answer, int | None]:
        raise AssertionError("a copy never runs the request")

    return run_once(repo, caller="c", key="k", operation="deploy", payload={}, ttl_seconds=60, run=run,
                    sleep=sleep, clock=clock)  # fmt: skip


def test_a_copy_polls_every_50_ms_for_20_seconds_then_gives_up():
    """Mutants killed: WAIT_SECONDS 20 -> 21, POLL_SECONDS 0.05 -> 1.05."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(IdempotencyInProgress):
        _run_once(StillRunning(), sleep, lambda: now[0])
    assert set(slept) == {0.05}
    assert 19.95 <= now[0] < 20.1


def test_a_copy_gives_up_as_soon_as_its_wait_is_over():
    """Mutant killed: `clock() >= deadline` made strict (one more poll at the deadline)."""
    clock = iter([0.0, 20.0, 30.0])
    slept: list[float] = []
    with pytest.raises(IdempotencyInProgress):
        _run_once(StillRunning(), slept.append, lambda: next(clock))
    assert slept == []


def test_a_copy_that_sees_the_answer_while_polling_replays_it_without_running():
    repo = StillRunning(answer_after=2)
    answer = _run_once(repo, lambda s: None, lambda: 0.0)
    assert answer == Answer(202, {"upgradeId": "1"}, replayed=True) and repo.claims == 3


def test_the_request_hash_is_sha256_of_the_canonical_json_so_stored_keys_survive_an_upgrade():
    """A key stored by the running version must match the same body after a deploy of the next one, so
    the canonical form is fixed: sorted keys, no spaces, non-ASCII escaped (mutants killed: sort_keys off, either
    separator changed)."""
    canonical = '{"a":[1,{"x":"\\u00e9","y":null}],"b":1}'
    assert request_hash({"b": 1, "a": [1, {"y": None, "x": "é"}]}) == hashlib.sha256(canonical.encode()).hexdigest()
