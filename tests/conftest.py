from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from upgrader import factory
from upgrader.rollout.upgrade_repository import UpgradeRepository

from tests.support.database import temporary_database, truncate_all
from tests.support.fakes import FakeSyncLauncher, FakeWorkflow


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment of a Lambda, pointing at the test database; adapters rebuilt from it."""
    truncate_all(database_url)
    values = {
        "DATABASE_URL": database_url,
        "UPGRADE_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:upgrade",
        "MANIFEST_BUCKET": "upgrade-manifests",
        "JOB_POLL_SECONDS": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "customer-upgrades",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    factory.reset()
    yield values
    factory.reset()


@pytest.fixture
def repo(env: dict[str, str]) -> UpgradeRepository:
    return factory.repository()


@pytest.fixture
def fake_workflow(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FakeWorkflow:
    fake = FakeWorkflow()
    monkeypatch.setattr(factory, "workflow", lambda: fake)
    return fake


@pytest.fixture
def fake_launcher(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FakeSyncLauncher:
    fake = FakeSyncLauncher()
    monkeypatch.setattr(factory, "sync_launcher", lambda: fake)
    return fake


@pytest.fixture
def make_customers(repo: UpgradeRepository) -> Callable[..., list[str]]:
    """Create n active customers cust_0001.. with namespace customer-0001 and api at v1.1.0."""

    def make(n: int, *, prefix: str = "cust_", start: int = 1, status: str = "active",
             versions: dict[str, str] | None = None, labels: dict[str, str] | None = None,
             repositories: dict[str, str] | None = None) -> list[str]:  # fmt: skip
        ids = []
        for i in range(start, start + n):
            cid = f"{prefix}{i:04d}"
            repo.upsert_customer(
                cid,
                f"customer-{cid.replace('_', '-').removeprefix('cust-')}",
                f"customer-{cid.replace('_', '-').removeprefix('cust-')}",
                status=status,
                labels=labels,
                versions=versions if versions is not None else {"api": "v1.1.0", "dashboard": "v1.9.0"},
                repositories=repositories,
            )
            ids.append(cid)
        return ids

    return make


@pytest.fixture
def sql(database_url: str) -> Callable[..., list[dict[str, Any]]]:
    def run(query: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row, autocommit=True) as conn:
            cur = conn.execute(query, params or None)
            return cur.fetchall() if cur.description else []

    return run


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"]) if response.get("body") else None
