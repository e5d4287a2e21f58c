"""The deploy-time migrator waits for a database that is not reachable yet (a new RDS Proxy target)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.functions import load_function
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
