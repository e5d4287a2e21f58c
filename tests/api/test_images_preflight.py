"""The images' pre-flight through the real API (api_deploy, the plan), real PostgreSQL and a real registry
(Debian's docker-registry on 127.0.0.1, filled with images built here and pushed with skopeo): a deploy is
refused before anything is written when a target or rollback image is missing or mutable, answers 503/502
when the registry fails, and records every customer's digests when it starts (docs/images.md)."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader import factory

from tests.conftest import body
from tests.images.conftest import proxy, push, registry, skopeo  # noqa: F401  (fixtures: the real registry)
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke
from tests.support.registry_proxy import ProxyRules
from upgradectl.local.realcluster.processes import free_port


def deploy(**payload: Any) -> tuple[int, dict[str, Any]]:
    request = {"component": "api", "version": "v1.2.0", "strategy": "all", **payload}
    request = {key: value for key, value in request.items() if value is not None}  # None: not sent (a train)
    response = invoke("api_deploy", api_event("api_deploy", body=request))
    return response["statusCode"], body(response)


def plan(**payload: Any) -> tuple[int, dict[str, Any]]:
    request = {"component": "api", "version": "v1.2.0", "strategy": "all", **payload}
    request = {key: value for key, value in request.items() if value is not None}  # None: not sent (a train)
    response = invoke("api_upgrades", api_event("api_upgrades_plan", body=request))
    return response["statusCode"], body(response)


@pytest.fixture
def fleet(env, make_customers, registry, push, fake_workflow):  # noqa: F811
    """Three customers on api v1.1.0 whose releases name <registry>/fleet/api; v1.1.0 and v1.2.0 pushed."""

    def make(repository: str = f"{registry.host}/fleet/api", n: int = 3, **kwargs: Any) -> list[str]:
        return make_customers(n, repositories={"api": repository}, **kwargs)

    digests = {tag: push("fleet/api", tag, f"api {tag}".encode()) for tag in ("v1.1.0", "v1.2.0")}
    return make, digests


def test_a_deploy_records_each_customers_target_and_rollback_digest(fleet, sql, registry):  # noqa: F811
    make, digests = fleet
    ids = make()
    asked = len(registry.requests())

    status, answer = deploy()

    assert status == 202, answer
    rows = sql("SELECT customer_id, image_repository, target_digest, rollback_digest FROM customer_upgrade_logs "
               "ORDER BY customer_id")  # fmt: skip
    assert [r["customer_id"] for r in rows] == ids
    assert {r["target_digest"] for r in rows} == {digests["v1.2.0"]}
    assert {r["rollback_digest"] for r in rows} == {digests["v1.1.0"]}
    assert {r["image_repository"] for r in rows} == {f"{registry.host}/fleet/api"}
    # one registry request per distinct image (two), not one per customer and image (six)
    assert len([r for r in registry.requests()[asked:] if "/manifests/" in r.path]) == 2
    recorded = sql("SELECT parameters FROM system_upgrades")[0]["parameters"]["images"]
    assert recorded["checked"] == 3 and recorded["registryRequests"] == 2
    assert recorded["targets"] == {f"{registry.host}/fleet/api:v1.2.0@{digests['v1.2.0']}": 3}


def test_a_missing_target_tag_is_refused_naming_every_customer_and_writes_nothing(fleet, database_url, fake_workflow):
    make, _ = fleet
    ids = make()
    before = snapshot(database_url)

    status, answer = deploy(version="v1.2.1")

    assert status == 422, answer
    assert answer["error"] == "ImagesRefused"
    assert "target image" in answer["message"] and "v1.2.1" in answer["message"]
    assert sorted(p["customerId"] for p in answer["problems"] if p["role"] == "target") == ids
    assert {p["reason"] for p in answer["problems"]} == {"not in the registry"}
    assert snapshot(database_url) == before
    assert fake_workflow.started == []


def test_a_missing_rollback_image_is_refused_unless_allowed_and_then_recorded(fleet, database_url, sql):
    make, _ = fleet
    make(versions={"api": "v1.0.9"})  # never pushed: nothing to roll back to
    before = snapshot(database_url)

    status, refused = deploy()
    assert status == 422, refused
    assert {p["role"] for p in refused["problems"]} == {"rollback"}
    assert "allowNoRollbackImage" in refused["message"]
    assert snapshot(database_url) == before

    status, answer = deploy(allowNoRollbackImage=True)
    assert status == 202, answer
    parameters = sql("SELECT parameters FROM system_upgrades")[0]["parameters"]
    assert parameters["allowNoRollbackImage"] is True
    assert parameters["images"]["withoutRollbackImage"] == ["cust_0001", "cust_0002", "cust_0003"]
    assert {r["rollback_digest"] for r in sql("SELECT rollback_digest FROM customer_upgrade_logs")} == {None}


@pytest.mark.parametrize(("version", "pattern"), [("latest", None), ("dev-7", "main|dev-.*")])
def test_a_mutable_target_tag_is_refused(fleet, database_url, monkeypatch, version, pattern):
    make, _ = fleet
    if pattern:
        monkeypatch.setenv("MUTABLE_TAG_PATTERN", pattern)
        factory.reset()
    make()
    before = snapshot(database_url)

    status, answer = deploy(version=version)

    assert status == 422, answer
    assert {p["reason"] for p in answer["problems"]} == {"a mutable tag names no fixed image"}
    assert snapshot(database_url) == before


def test_an_unreachable_registry_is_a_503_naming_it_and_nothing_is_written(fleet, database_url):
    make, _ = fleet
    host = f"127.0.0.1:{free_port()}"
    make(repository=f"{host}/fleet/api")
    before = snapshot(database_url)

    status, answer = deploy()

    assert status == 503, answer
    assert answer["error"] == "RegistryUnavailable" and host in answer["message"]
    assert snapshot(database_url) == before


def test_a_registry_refusing_access_is_a_502_naming_the_credentials_source(fleet, proxy, database_url):  # noqa: F811
    make, _ = fleet
    front = proxy(ProxyRules(auth="basic", users={"ci": "secret"}))
    make(repository=f"{front.host}/fleet/api")
    before = snapshot(database_url)

    status, answer = deploy()

    assert status == 502, answer
    assert answer["error"] == "RegistryUnauthorized"
    assert f"no credentials configured for {front.host}" in answer["message"]
    assert snapshot(database_url) == before


def test_a_malformed_manifest_is_a_502_and_nothing_is_written(fleet, proxy, database_url):  # noqa: F811
    make, _ = fleet
    front = proxy(ProxyRules(strip_digest=True, corrupt_body=True))
    make(repository=f"{front.host}/fleet/api")
    before = snapshot(database_url)

    status, answer = deploy()

    assert status == 502, answer
    assert answer["error"] in ("MalformedManifest", "DigestMismatch")
    assert "fleet/api" in answer["message"]
    assert snapshot(database_url) == before


def test_the_plan_runs_the_same_preflight_and_says_the_deploy_would_be_refused(fleet, registry):  # noqa: F811
    make, digests = fleet
    make()

    status, good = plan()
    assert status == 200, good
    assert good["images"]["checked"] == 3 and good["images"]["problems"] == []
    assert good["images"]["targets"] == {f"{registry.host}/fleet/api:v1.2.0@{digests['v1.2.0']}": 3}

    status, bad = plan(version="v9.9.9")
    assert status == 200, bad
    assert bad["message"].startswith("a deploy would be refused (422 ImagesRefused)")
    assert len(bad["images"]["problems"]) == 3


def test_customers_without_a_known_repository_are_counted_unchecked_or_refused_when_required(
    fleet, database_url, monkeypatch, make_customers
):
    make, _ = fleet
    make(n=2)
    make_customers(1, start=3)  # discovered before repositories were recorded: none known

    status, answer = plan()
    assert status == 200, answer
    assert (answer["images"]["checked"], answer["images"]["unchecked"]) == (2, 1)

    monkeypatch.setenv("IMAGE_PREFLIGHT", "required")
    factory.reset()
    before = snapshot(database_url)
    status, refused = deploy()
    assert status == 422, refused
    assert [(p["customerId"], p["image"]) for p in refused["problems"]] == [("cust_0003", "(unknown)")]
    assert "api.image.repository" in refused["problems"][0]["reason"]
    assert snapshot(database_url) == before


def test_with_the_preflight_off_no_registry_is_asked(fleet, monkeypatch, sql):
    make, _ = fleet
    make(repository=f"127.0.0.1:{free_port()}/fleet/api")  # nobody listens there
    monkeypatch.setenv("IMAGE_PREFLIGHT", "off")
    factory.reset()
    status, answer = deploy()

    assert status == 202, answer
    images = sql("SELECT parameters FROM system_upgrades")[0]["parameters"]["images"]
    assert (images["preflight"], images["checked"], images["unchecked"]) == ("off", 0, 3)


# ---------------------------------------------------------------------------------------------- release trains
TRAIN = {"api": "v2.0.0", "dashboard": "v2.0.0"}


def _train(components: dict[str, str]) -> dict[str, Any]:
    return {"component": None, "version": None, "components": components}


@pytest.fixture
def train_fleet(env, make_customers, registry, push, fake_workflow):  # noqa: F811
    """Customers on api v1.1.0 and dashboard v1.9.0 whose releases name <registry>/train/<component>; both
    versions of both components pushed. make(n, versions=...) -> ids; digests[(component, tag)]."""
    repositories = {c: f"{registry.host}/train/{c}" for c in TRAIN}

    def make(n: int = 3, **kwargs: Any) -> list[str]:
        return make_customers(n, repositories=repositories, **kwargs)

    digests = {(c, tag): push(f"train/{c}", tag, f"{c} {tag}".encode())
               for c, tags in {"api": ("v1.1.0", "v2.0.0"), "dashboard": ("v1.9.0", "v2.0.0")}.items()
               for tag in tags}  # fmt: skip
    return make, digests, repositories


def test_a_train_checks_and_pins_every_component_each_distinct_image_asked_once(train_fleet, sql, registry):  # noqa: F811
    make, digests, repositories = train_fleet
    make()
    asked = len(registry.requests())

    status, answer = deploy(**_train(TRAIN))

    assert status == 202, answer
    # the registry was asked for the distinct images of every component: 2 targets + 2 rollbacks, once each
    manifests = sorted({r.path for r in registry.requests()[asked:] if "/manifests/" in r.path})
    assert manifests == [f"/v2/train/{c}/manifests/{tag}" for c, tag in sorted(digests)]
    assert len([r for r in registry.requests()[asked:] if "/manifests/" in r.path]) == 4
    rows = sql("SELECT image_repository, target_digest, rollback_digest, components FROM customer_upgrade_logs")
    assert len(rows) == 3
    for row in rows:  # the first component in the row's columns, the other in its `components`
        assert (row["image_repository"], row["target_digest"], row["rollback_digest"]) == (
            repositories["api"], digests[("api", "v2.0.0")], digests[("api", "v1.1.0")])  # fmt: skip
        assert row["components"]["dashboard"] == {
            "from": "v1.9.0", "to": "v2.0.0", "imageRepository": repositories["dashboard"],
            "targetDigest": digests[("dashboard", "v2.0.0")], "rollbackDigest": digests[("dashboard", "v1.9.0")],
        }  # fmt: skip
    images = sql("SELECT parameters FROM system_upgrades")[0]["parameters"]["images"]
    assert (images["checked"], images["unchecked"], images["registryRequests"]) == (3, 0, 4)
    assert images["targets"] == {f"{repositories[c]}:v2.0.0@{digests[(c, 'v2.0.0')]}": 3 for c in TRAIN}


def test_a_train_whose_second_component_was_never_pushed_is_refused_naming_it_and_writes_nothing(
    train_fleet, database_url, fake_workflow
):
    make, _, repositories = train_fleet
    ids = make()
    before = snapshot(database_url)
    train = {"api": "v2.0.0", "dashboard": "v2.0.1"}  # dashboard v2.0.1 was never pushed

    status, answer = deploy(**_train(train))

    assert status == 422, answer
    assert answer["error"] == "ImagesRefused"
    assert f"dashboard target image {repositories['dashboard']}:v2.0.1" in answer["message"]
    assert [(p["component"], p["customerId"], p["role"]) for p in answer["problems"]] == [
        ("dashboard", customer, "target") for customer in ids
    ]
    assert snapshot(database_url) == before
    assert fake_workflow.started == []
    # the plan runs the same pre-flight over every component and says so
    status, planned = plan(**_train(train))
    assert status == 200, planned
    assert planned["message"].startswith("a deploy would be refused (422 ImagesRefused)")
    assert {p["component"] for p in planned["images"]["problems"]} == {"dashboard"}
    assert planned["images"]["registryRequests"] == 4


def test_a_train_whose_second_components_rollback_image_is_missing_is_refused_unless_allowed(
    train_fleet, database_url, sql
):
    make, digests, _ = train_fleet
    ids = make(versions={"api": "v1.1.0", "dashboard": "v1.8.0"})  # dashboard v1.8.0 never pushed
    before = snapshot(database_url)

    status, refused = deploy(**_train(TRAIN))
    assert status == 422, refused
    assert {(p["component"], p["role"]) for p in refused["problems"]} == {("dashboard", "rollback")}
    assert sorted(p["customerId"] for p in refused["problems"]) == ids
    assert "allowNoRollbackImage" in refused["message"]
    assert snapshot(database_url) == before

    status, answer = deploy(**_train(TRAIN), allowNoRollbackImage=True)
    assert status == 202, answer
    parameters = sql("SELECT parameters FROM system_upgrades")[0]["parameters"]
    assert parameters["images"]["withoutRollbackImage"] == ids
    dashboards = [r["components"]["dashboard"] for r in sql("SELECT components FROM customer_upgrade_logs")]
    assert {d["targetDigest"] for d in dashboards} == {digests[("dashboard", "v2.0.0")]}
    assert all("rollbackDigest" not in d for d in dashboards)
