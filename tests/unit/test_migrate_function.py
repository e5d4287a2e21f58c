"""The deploy-time migrator waits for a database that is not reachable yet (a new RDS Proxy target), and
answers CloudFormation exactly once per outcome: a SUCCESS it could not deliver is never a FAILED."""

from __future__ import annotations

import email.message
import json
import urllib.error
from typing import Any

import psycopg
import pytest

from tests.support.events import load_event
from tests.support.functions import FakeContext, load_function
from tests.support.template import functions_by_folder, load_template


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def migrate(monkeypatch: pytest.MonkeyPatch):
    module = load_function("migrate")
    monkeypatch.setattr(module, "resolve_conninfo", lambda settings: "postgresql://proxy/upgrades")
    return module


def test_connection_refusals_are_retried_until_the_database_answers(migrate, monkeypatch):
    outcomes: list[Any] = [
        psycopg.OperationalError("connection refused"),
        psycopg.OperationalError("timeout"),
        ["004_x.sql"],
    ]

    def apply(conninfo: str) -> list[str]:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(migrate, "apply_migrations", apply)
    clock = FakeClock()

    result = migrate.run({"RequestType": "Update"}, sleep=clock.sleep, clock=clock)

    assert result == {"Applied": "004_x.sql"} and clock.now == 2 * migrate.CONNECT_RETRY_SECONDS


def test_the_wait_is_bounded_by_the_function_timeout(migrate, monkeypatch):
    def apply(conninfo: str) -> list[str]:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(migrate, "apply_migrations", apply)
    clock = FakeClock()

    with pytest.raises(psycopg.OperationalError):
        migrate.run({"RequestType": "Create"}, sleep=clock.sleep, clock=clock)
    _, resource = functions_by_folder(load_template())["migrate"]
    assert clock.now <= migrate.CONNECT_WAIT_SECONDS < resource["Properties"]["Timeout"] - 30


def test_delete_touches_nothing(migrate, monkeypatch):
    monkeypatch.setattr(migrate, "apply_migrations", lambda conninfo: pytest.fail("migrated on delete"))
    assert migrate.run({"RequestType": "Delete"}) == {"Applied": ""}


# --- the answer to CloudFormation ------------------------------------------------------------------


class ResponseUrl:
    """CloudFormation's pre-signed ResponseURL: takes PUTs, or fails them as `failures` says (in order)."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.tried: list[str] = []  # the Status of every PUT attempted
        self.delivered: list[str] = []

    def put(self, url: str, body: bytes) -> None:
        status = json.loads(body)["Status"]
        self.tried.append(status)
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(status)


class ShortContext(FakeContext):
    def __init__(self, seconds_left: float) -> None:
        super().__init__("migrate")
        self.seconds_left = seconds_left

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds_left * 1000)


def http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("https://example/x", code, "error", email.message.Message(), None)


@pytest.fixture
def answered(migrate, monkeypatch):
    """The migrate module with migrations that apply, a fake clock for its pauses; returns a setter of
    the ResponseURL's behaviour."""
    monkeypatch.setattr(migrate, "apply_migrations", lambda conninfo: ["030_x.sql"])
    clock = FakeClock()
    monkeypatch.setattr(migrate.cfnresponse_min, "_sleep", clock.sleep)

    def respond(*failures: Exception) -> ResponseUrl:
        url = ResponseUrl(*failures)
        monkeypatch.setattr(migrate.cfnresponse_min, "_put", url.put)
        return url

    return respond


def test_a_transient_failure_to_deliver_success_is_retried_and_never_becomes_failed(migrate, answered, caplog):
    """Breakage tried: SEND_ATTEMPTS = 1 (no retry): the SUCCESS is never delivered, the test fails; the
    SUCCESS send moved back inside the migration's try (main's handler): "migration failed" and FAILED."""
    # Given the migrations apply, and the first PUT of the answer is cut (connection reset)
    url = answered(urllib.error.URLError(ConnectionResetError("connection reset by peer")))
    # When CloudFormation's request is handled
    migrate.lambda_handler(load_event("migrate"), FakeContext("migrate"))
    # Then the SUCCESS answer was sent again and delivered; FAILED was never sent
    assert (url.tried, url.delivered) == (["SUCCESS", "SUCCESS"], ["SUCCESS"])
    assert "migration failed" not in caplog.messages


def test_success_that_cannot_be_delivered_raises_for_a_retry_and_never_sends_failed(migrate, answered, caplog):
    """Breakage tried: the handler's SUCCESS send inside the migration's try/except (main): the
    undelivered SUCCESS turned into "migration failed" and a FAILED answer, the test fails."""
    # Given the migrations apply, and the ResponseURL answers 503 to every PUT
    url = answered(*[http_error(503) for _ in range(10)])
    # When CloudFormation's request is handled, the invocation fails (Lambda runs it again: migrations
    # are re-runnable, the next one delivers SUCCESS) ...
    with pytest.raises(migrate.cfnresponse_min.ResponseNotDelivered):
        migrate.lambda_handler(load_event("migrate"), FakeContext("migrate"))
    # ... after every attempt, each of them SUCCESS: never a FAILED for applied migrations
    assert url.tried == ["SUCCESS"] * migrate.cfnresponse_min.SEND_ATTEMPTS and url.delivered == []
    logged = " | ".join(caplog.messages)
    assert "migration failed" not in logged and "did not take the SUCCESS answer" in logged


def test_a_refused_response_url_is_not_retried(migrate, answered):
    # A 403 from S3 (the pre-signed URL expired): the same URL will not be accepted later
    url = answered(http_error(403))
    with pytest.raises(migrate.cfnresponse_min.ResponseNotDelivered, match="HTTP 403"):
        migrate.lambda_handler(load_event("migrate"), FakeContext("migrate"))
    assert url.tried == ["SUCCESS"]


def test_retries_stay_within_the_invocation_time_left(migrate, answered):
    # Given 26 s left: one try and one pause fit (pause 1 s + a try's 20 s + 5 s margin), no more
    url = answered(*[urllib.error.URLError("timed out") for _ in range(10)])
    with pytest.raises(migrate.cfnresponse_min.ResponseNotDelivered):
        migrate.lambda_handler(load_event("migrate"), ShortContext(26.0))
    assert url.tried == ["SUCCESS", "SUCCESS"]


def test_a_failed_migration_answers_failed_once(migrate, monkeypatch, answered, caplog):
    url = answered()

    def broken(conninfo: str) -> list[str]:
        raise psycopg.errors.SyntaxError("syntax error at or near 'CREAT'")

    monkeypatch.setattr(migrate, "apply_migrations", broken)
    migrate.lambda_handler(load_event("migrate"), FakeContext("migrate"))
    assert url.delivered == url.tried == ["FAILED"]
    assert "migration failed" in caplog.messages
