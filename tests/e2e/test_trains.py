"""Release trains through the real state machine and handlers, the simulated cluster's helm (issue 21 item 3,
docs/rings.md "Trains"): one helm upgrade per customer sets every component of the train, the compatibility
rules are checked on the set, each component's from -> to is shown, a rollback restores exactly the train's
components (and only them) in one helm operation, and a train whose one component fails its health check is
rolled back whole."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader.infra.components import REGISTRY

from tests.api.helpers import call, control
from tests.conftest import body
from tests.support.events import api_event
from tests.support.functions import invoke

pytestmark = pytest.mark.e2e

OPERATION_LABEL = "upgrades.example.com/operation"
TRAIN = {"api": "v2.0.0", "dashboard": "v2.0.0"}
BEFORE = {"api": "v1.1.0", "dashboard": "v1.9.0", "exporter": "v1.0.0"}


def _deploy(payload: dict[str, Any]) -> tuple[int, Any]:
    response = invoke("api_deploy", api_event("api_deploy", body={"strategy": "all", **payload}))
    return response["statusCode"], body(response)


def _plan(payload: dict[str, Any]) -> tuple[int, Any]:
    response = invoke("api_upgrades", api_event("api_upgrades_plan", body={"strategy": "all", **payload}))
    return response["statusCode"], body(response)


def _add_rule(rule: dict[str, Any]) -> None:
    response = invoke("api_customers", api_event("api_customers_rules_create", body=rule))
    assert response["statusCode"] == 201, response["body"]


def _argv(manifest: dict[str, Any]) -> list[str]:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    return list(container["command"]) + list(container["args"])


def _tags(stack: Any, name: str) -> dict[str, str]:
    """Each component's image tag in the release's newest revision, as helm stored its values."""
    record = stack.cluster.release_record(name, name)
    config = record["config"]
    return {c: config[c]["image"]["tag"] for c in BEFORE if c in config}


def _customers(stack: Any, make_customers: Any, n: int) -> list[str]:
    ids = make_customers(n, versions=dict(BEFORE))
    for customer_id in ids:
        name = f"customer-{customer_id.removeprefix('cust_')}"
        stack.cluster.add_release(name, name, values={f"{c}.image.tag": v for c, v in BEFORE.items()})
    return ids


def _inventory(sql: Any, customer_id: str) -> dict[str, str]:
    """What the inventory says the customer runs (the components this test sets; the chart's defaults aside)."""
    rows = sql("SELECT component, version FROM customer_component_versions WHERE customer_id = %s", customer_id)
    return {r["component"]: r["version"] for r in rows if r["component"] in BEFORE}


@pytest.fixture
def lockstep_rules() -> None:
    """api 2 needs dashboard 2 and dashboard 2 needs api 2: either alone is refused."""
    _add_rule({"component": "api", "versions": ">=2.0", "requires": {"component": "dashboard", "versions": ">=2.0"}})
    _add_rule({"component": "dashboard", "versions": ">=2.0", "requires": {"component": "api", "versions": ">=2.0"}})


def test_a_train_the_rules_refuse_piecemeal_is_deployed_together_in_one_helm_upgrade_per_customer(
    stack, make_customers, sql, lockstep_rules
):
    ids = _customers(stack, make_customers, 3)

    # Either component alone is refused by the rules, and nothing is written
    for component in TRAIN:
        code, refused = _deploy({"component": component, "version": TRAIN[component]})
        assert code == 422, refused
        assert refused["error"] == "IncompatibleVersions"
    assert sql("SELECT count(*) AS n FROM system_upgrades")[0]["n"] == 0

    # The plan of the train says what the deploy will do
    code, plan = _plan({"components": TRAIN})
    assert code == 200, plan
    assert (plan["component"], plan["version"], plan["components"]) == ("api", "v2.0.0", TRAIN)
    assert plan["incompatible"] == [] and plan["total"] == 3

    # The train is deployed: one upgrade, through the real state machine
    code, started = _deploy({"components": TRAIN})
    assert code == 202, started
    assert started["components"] == TRAIN
    assert started["message"].startswith("release train api v2.0.0 + dashboard v2.0.0: ")
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    uid = started["upgradeId"]

    # One helm Job per customer, setting both tags in one argv (one revision holds the whole train)
    jobs = [j for j in stack.cluster.created_jobs if j.manifest["metadata"]["labels"][OPERATION_LABEL] == "upgrade"]
    assert len(jobs) == 3
    argv = _argv(jobs[0].manifest)
    sets = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set-string"]
    assert sets == ["api.image.tag=v2.0.0", "dashboard.image.tag=v2.0.0"]
    for customer_id in ids:
        name = f"customer-{customer_id.removeprefix('cust_')}"
        assert _tags(stack, name) == {**BEFORE, **TRAIN}
        assert [rev for rev, _, _ in stack.cluster.release_history(name, name)] == [1, 2]
        assert _inventory(sql, customer_id) == {**BEFORE, **TRAIN}

    # The status and the logs show each component's from -> to, and what the release held around helm
    status = stack.status(uid)
    assert (status["status"], status["completed"], status["components"]) == ("completed", 3, TRAIN)
    entry = stack.logs(uid)["logs"][0]
    assert entry["components"] == {
        "api": {"from": "v1.1.0", "to": "v2.0.0", "before": "v1.1.0", "after": "v2.0.0"},
        "dashboard": {"from": "v1.9.0", "to": "v2.0.0", "before": "v1.9.0", "after": "v2.0.0"},
    }
    # and the events carry the train
    detail = sql("SELECT detail FROM event_outbox WHERE detail_type = 'Customer Upgraded' ORDER BY id LIMIT 1")
    assert detail[0]["detail"]["upgrade"]["components"] == TRAIN
    assert detail[0]["detail"]["customer"]["components"]["dashboard"]["after"] == "v2.0.0"

    # While it was active, neither of its components could have been deployed on its own: see the overlap test.
    # Deploying the same train again leaves everyone out as already there.
    code, again = _plan({"components": TRAIN})
    assert code == 200 and again["leftOutCounts"] == {"already_at_version": 3}, again


def test_a_train_rolls_back_exactly_its_components_and_keeps_a_later_change_of_another(stack, make_customers, sql):
    ids = _customers(stack, make_customers, 2)
    code, started = _deploy({"components": TRAIN})
    assert code == 202, started
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    uid = started["upgradeId"]
    # a later upgrade of another component (exporter) moves the releases on
    code, exporter = _deploy({"component": "exporter", "version": "v1.1.0"})
    assert code == 202, exporter
    assert stack.wait_execution(exporter["jobId"])["status"] == "SUCCEEDED"
    jobs_before = len(stack.cluster.created_jobs)

    # When the whole train is rolled back
    code, data = control("rollback", uid)
    assert code == 202, data
    assert stack.wait_execution(data["jobId"])["status"] == "SUCCEEDED"

    # Then one helm operation per customer restores api and dashboard (only them), and exporter keeps its change
    restores = stack.cluster.created_jobs[jobs_before:]
    assert len(restores) == 2
    assert {j.manifest["metadata"]["labels"][OPERATION_LABEL] for j in restores} == {"restore"}
    argv = _argv(restores[0].manifest)
    sets = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set-string"]
    assert sorted(sets) == ["api.image.tag=v1.1.0", "dashboard.image.tag=v1.9.0"]
    for customer_id in ids:
        name = f"customer-{customer_id.removeprefix('cust_')}"
        assert _tags(stack, name) == {**BEFORE, "exporter": "v1.1.0"}
        assert _inventory(sql, customer_id) == {**BEFORE, "exporter": "v1.1.0"}
    rolled = stack.logs(uid, operation="rollback")["logs"]
    assert {r["status"] for r in rolled} == {"completed"}
    assert rolled[0]["components"]["dashboard"]["from"] == "v2.0.0"
    assert rolled[0]["components"]["dashboard"]["to"] == "v1.9.0"
    assert rolled[0]["components"]["dashboard"]["after"] == "v1.9.0"


def test_a_train_whose_one_component_fails_its_health_check_is_rolled_back_whole(stack, make_customers, sql):
    ids = _customers(stack, make_customers, 2)
    # dashboard v2.0.0 is a broken build: its pods get ready, its health path answers 503
    stack.cluster.probe_broken_images.add(f"{REGISTRY.get('dashboard').sample_image_repository()}:v2.0.0")

    code, started = _deploy({"components": TRAIN, "autoRollback": True,
                             "healthCheck": {"httpPath": "/healthz", "timeoutSeconds": 10}})  # fmt: skip
    assert code == 202, started
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    rows = stack.logs(started["upgradeId"])["logs"]
    assert [r["status"] for r in rows] == ["rolled_back", "rolled_back"]
    assert "dashboard: HTTP health check /healthz failed" in rows[0]["error"]
    for customer_id in ids:
        name = f"customer-{customer_id.removeprefix('cust_')}"
        # both components are back: the automatic rollback returned to the revision before the train
        assert _tags(stack, name) == BEFORE
        assert _inventory(sql, customer_id) == BEFORE


def test_a_train_overlapping_an_active_upgrade_of_one_of_its_components_is_refused(stack, make_customers, sql):
    _customers(stack, make_customers, 2)
    code, first = _deploy({"component": "dashboard", "version": "v2.0.0", "strategy": "canary",
                           "canaryPercent": 50})  # fmt: skip
    assert code == 202, first
    stack.wait_for_status(first["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    rows = sql("SELECT count(*) AS n FROM customer_upgrade_logs")[0]["n"]

    code, refused = _deploy({"components": TRAIN})

    assert code == 409, refused
    assert f"upgrade {first['upgradeId']}" in refused["message"] and "'dashboard'" in refused["message"]
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs")[0]["n"] == rows
    # and the other way round: a train holds its components
    code, aborted = control("abort", first["upgradeId"])
    assert code == 202, aborted
    stack.wait_for_status(first["upgradeId"], lambda s: s["status"] == "aborted")
    code, train = _deploy({"components": TRAIN, "strategy": "canary", "canaryPercent": 50})
    assert code == 202, train
    stack.wait_for_status(train["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    code, alone = _deploy({"component": "dashboard", "version": "v2.1.0"})
    assert code == 409, alone
    assert f"upgrade {train['upgradeId']}" in alone["message"]
    code, listed = call("api_upgrades", "api_upgrades_list", "/api/upgrades", {}, {"component": "dashboard"})
    assert code == 200 and [u["upgradeId"] for u in listed["upgrades"]][0] == train["upgradeId"], listed
