from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke


def deploy(payload: Any = None, raw: str | None = None, instance: int = 0) -> dict[str, Any]:
    event = api_event("api_deploy", body=payload, raw_body=raw)
    return invoke("api_deploy", event, instance)


def test_spec_canary_example_answers_with_the_spec_fields(make_customers, fake_workflow, sql):
    # Given 50 active customers (the spec's example fleet)
    make_customers(50)
    # When the spec's canary request is sent
    response = deploy({"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 10})
    # Then 202 with upgradeId, jobId, strategy and the spec's message
    assert response["statusCode"] == 202
    data = body(response)
    assert set(data) >= {"upgradeId", "jobId", "strategy", "message"}
    assert data["strategy"] == "canary"
    assert data["message"].startswith("Canary upgrade started for 5 customers")
    assert data["waves"] == [5, 45]
    assert data["upgradeId"].isdigit()
    assert data["jobId"].startswith(f"upgrade-{data['upgradeId']}-")
    # and the execution was started with that name
    assert [name for name, _ in fake_workflow.started] == [data["jobId"]]
    # and one pending row per customer, with from_version from the inventory and its wave
    rows = sql("SELECT customer_id, status, from_version, to_version, wave FROM customer_upgrade_logs ORDER BY id")
    assert len(rows) == 50
    assert {r["status"] for r in rows} == {"pending"}
    assert {r["from_version"] for r in rows} == {"v1.1.0"}
    assert sum(1 for r in rows if r["wave"] == 0) == 5
    upgrade = sql("SELECT * FROM system_upgrades")[0]
    assert upgrade["total_customers"] == 50
    assert upgrade["requested_by"] == "arn:aws:sts::123456789012:assumed-role/PlatformOperator/jane"
    assert upgrade["from_version"] == "v1.1.0"


@pytest.mark.parametrize(
    ("strategy", "extra", "waves"),
    [
        ("all", {}, [23]),
        ("batch", {"batchSize": 10}, [10, 10, 3]),
        ("batch", {}, [10, 10, 3]),
        ("canary", {}, [3, 20]),
        ("canary", {"canaryPercent": 100}, [23]),
    ],
)
def test_strategies_plan_their_waves(make_customers, fake_workflow, strategy, extra, waves):
    make_customers(23)
    response = deploy({"component": "dashboard", "version": "v2.0.0", "strategy": strategy, **extra})
    assert response["statusCode"] == 202, response["body"]
    assert body(response)["waves"] == waves


def test_only_active_customers_are_targeted(make_customers, fake_workflow, sql):
    make_customers(4)
    make_customers(3, start=10, status="suspended")
    response = deploy({"component": "api", "version": "v1.2.0", "strategy": "all"})
    assert body(response)["total"] == 4
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs")[0]["n"] == 4


def test_no_customers_is_409_and_writes_nothing(env, fake_workflow, database_url):
    # A well-formed request that the inventory cannot serve: a conflict with its state, not bad input
    before = snapshot(database_url)
    response = deploy({"component": "api", "version": "v1.2.0", "strategy": "all"})
    assert response["statusCode"] == 409
    assert body(response)["error"] == "NoTargetCustomers"
    assert "no active customer" in body(response)["message"]
    assert snapshot(database_url) == before


def test_second_deploy_of_same_component_is_409(make_customers, fake_workflow):
    make_customers(3)
    assert deploy({"component": "api", "version": "v1.2.0", "strategy": "all"})["statusCode"] == 202
    second = deploy({"component": "api", "version": "v1.3.0", "strategy": "all"})
    assert second["statusCode"] == 409
    assert "already" in body(second)["message"]
    # another component is independent
    assert deploy({"component": "exporter", "version": "v1.1.0", "strategy": "all"})["statusCode"] == 202


def test_ten_concurrent_deploys_of_one_component_exactly_one_wins(make_customers, fake_workflow, sql):
    make_customers(5)
    payload = {"component": "mosquitto", "version": "2.0.18", "strategy": "all"}
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        # ten concurrent Lambda invocations: ten execution environments (module instances)
        codes = sorted(pool.map(lambda i: deploy(payload, instance=i)["statusCode"], range(10)))
    assert codes == [202] + [409] * 9
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 1
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs")[0]["n"] == 5
    assert len(fake_workflow.started) == 1


def test_failed_start_leaves_nothing_written(make_customers, fake_workflow, database_url):
    make_customers(3)
    fake_workflow.fail_start = True
    before = snapshot(database_url)
    response = deploy({"component": "api", "version": "v1.2.0", "strategy": "all"})
    assert response["statusCode"] == 503
    after = snapshot(database_url)
    assert after["system_upgrades"] == before["system_upgrades"] == []
    assert after["customer_upgrade_logs"] == []


def test_customer_ids_select_a_subset_unknown_ids_are_404_inactive_409(make_customers, fake_workflow, database_url):
    make_customers(5)
    ok = deploy({"component": "api", "version": "v1.2.0", "strategy": "all", "customerIds": ["cust_0002", "cust_0004"]})
    assert body(ok)["total"] == 2
    before = snapshot(database_url)
    bad = deploy(
        {"component": "dashboard", "version": "v1", "strategy": "all", "customerIds": ["cust_0002", "cust_9999"]}
    )
    assert (bad["statusCode"], body(bad)["error"]) == (404, "UnknownCustomers")
    assert "cust_9999" in body(bad)["message"]
    make_customers(1, start=20, status="suspended")
    inactive = deploy({"component": "dashboard", "version": "v1", "strategy": "all", "customerIds": ["cust_0020"]})
    assert (inactive["statusCode"], body(inactive)["error"]) == (409, "InactiveCustomers")
    assert "cust_0020" in body(inactive)["message"]
    assert snapshot(database_url) != before  # the suspended customer
    assert snapshot(database_url)["system_upgrades"] == before["system_upgrades"]
    assert snapshot(database_url)["customer_upgrade_logs"] == before["customer_upgrade_logs"]


def test_a_plan_with_more_waves_than_one_execution_holds_is_refused_naming_the_limit(
    make_customers, fake_workflow, sql
):
    make_customers(501)
    response = invoke("api_deploy", api_event("api_deploy", body={"component": "api", "version": "v1.2.0",
                                                                   "strategy": "batch", "batchSize": 1}))  # fmt: skip
    assert response["statusCode"] == 422, response["body"]
    message = body(response)["message"]
    assert "501 waves: at most 500 waves fit one execution" in message and "use a larger batchSize" in message
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 0
    assert fake_workflow.started == []


def test_waits_longer_than_an_execution_may_last_are_refused_naming_the_limit(make_customers, fake_workflow, sql):
    make_customers(20)
    request = {"component": "api", "version": "v1.2.0", "strategy": "canary", "approvalTimeoutSeconds": 31_536_000}
    response = invoke("api_deploy", api_event("api_deploy", body=request))
    assert response["statusCode"] == 422, response["body"]
    assert "an execution may last at most 31536000 s (one year)" in body(response)["message"]
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 0
    # within the limit it is accepted
    request["approvalTimeoutSeconds"] = 30 * 24 * 3600
    assert invoke("api_deploy", api_event("api_deploy", body=request))["statusCode"] == 202
