"""maxConcurrency is capped by the workers' reserved concurrency (MAX_CONCURRENCY_CAP): 422 above it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from upgrader.infra.settings import get_settings

from tests.api.helpers import control, deploy
from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke


@pytest.fixture
def cap_of_5(env, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("MAX_CONCURRENCY_CAP", "5")
    get_settings.cache_clear()
    yield 5
    get_settings.cache_clear()


def test_a_deploy_above_the_cap_is_refused_naming_the_limit_and_writes_nothing(
    cap_of_5, make_customers, fake_workflow, database_url
):
    make_customers(3)
    before = snapshot(database_url)
    request = {"component": "api", "version": "v1.2.0", "strategy": "all", "maxConcurrency": 6}

    response = invoke("api_deploy", api_event("api_deploy", body=request))

    assert response["statusCode"] == 422
    message = body(response)["message"]
    assert "maxConcurrency 6" in message and "limit of 5" in message and "MAX_CONCURRENCY_CAP" in message
    assert snapshot(database_url) == before and fake_workflow.started == []


def test_a_deploy_at_the_cap_is_accepted(cap_of_5, make_customers, fake_workflow, sql):
    make_customers(3)
    deploy(maxConcurrency=5)
    assert sql("SELECT parameters FROM system_upgrades")[0]["parameters"]["maxConcurrency"] == 5


def test_without_maxconcurrency_the_default_is_lowered_to_the_cap(cap_of_5, make_customers, fake_workflow, sql):
    make_customers(3)
    deploy()  # the default is 10
    assert sql("SELECT parameters FROM system_upgrades")[0]["parameters"]["maxConcurrency"] == 5


def test_without_a_cap_the_model_bound_applies(make_customers, fake_workflow, sql):
    make_customers(3)
    deploy(maxConcurrency=1000)
    assert sql("SELECT parameters FROM system_upgrades")[0]["parameters"]["maxConcurrency"] == 1000


def test_a_whole_upgrade_rollback_above_the_cap_is_refused(cap_of_5, make_customers, fake_workflow, sql):
    make_customers(2)
    uid = deploy()["upgradeId"]
    sql("UPDATE system_upgrades SET status = 'completed'")
    sql("UPDATE customer_upgrade_logs SET status = 'completed'")

    code, data = control("rollback", uid, {"maxConcurrency": 6})

    assert code == 422 and "limit of 5" in data["message"]
    assert control("rollback", uid, {"maxConcurrency": 5})[0] == 202
