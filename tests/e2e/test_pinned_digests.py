"""Digests pinned (issue 22, docs/images.md): the digest the pre-flight resolved in a real registry (docker-registry
on 127.0.0.1, images pushed with skopeo) is what helm installs in every wave (`--set-string
api.image.tag=v1.2.0@sha256:…`), what the simulated release then holds and renders, and what the logs show;
the inventory keeps showing the version; a rollback restores the rollback digest. Blue-green too: the idle slot's
tag is pinned, and the switch, the finalize and the rollback's switch back read a pinned slot as its version. The
real state machine, the real API, real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import call, deploy, rollback
from tests.conftest import body
from tests.e2e.conftest import set_strings
from tests.e2e.test_blue_green import BLUEGREEN, api_slots, deployment, inventory, jobs_of, release_of
from tests.support.events import api_event
from tests.support.functions import invoke

pytestmark = pytest.mark.e2e


def fleet_images() -> dict[str, Any]:
    code, answer = call("api_customers", "api_customers_fleet_images", "/api/fleet/images", {})
    assert code == 200, answer
    return answer


def test_every_wave_installs_the_resolved_digest_and_the_release_holds_it(
    checked_stack,
    make_customers,
    registry,
    push,
    sql,
):
    # Given 3 customers on api v1.1.0 whose releases name an api repository of the real registry
    repository = f"{registry.host}/pinned/api"
    digests = {tag: push("pinned/api", tag, f"api {tag}".encode()) for tag in ("v1.1.0", "v1.2.0")}
    ids = make_customers(3, repositories={"api": repository})
    for customer_id in ids:
        name = f"customer-{customer_id.removeprefix('cust_')}"
        checked_stack.cluster.add_release(
            name, name, values={"api.image.tag": "v1.1.0", "api.image.repository": repository}
        )

    # When api v1.2.0 is deployed in two batches
    started = deploy(component="api", version="v1.2.0", strategy="batch", batchSize=2)
    assert checked_stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then every helm Job of both waves set the pinned tag value
    pinned = f"v1.2.0@{digests['v1.2.0']}"
    upgrades = [j for j in checked_stack.cluster.created_jobs if "helm-upgrade-" in j.manifest["metadata"]["name"]]
    assert len(upgrades) == 3
    assert all(set_strings(job) == [f"api.image.tag={pinned}"] for job in upgrades)
    # the releases hold it and their Deployments run the image by its digest, as the chart renders it
    name = f"customer-{ids[0].removeprefix('cust_')}"
    record = checked_stack.cluster.release_record(name, name)
    assert record is not None and record["config"]["api"]["image"]["tag"] == pinned
    workload = checked_stack.cluster.workload(name, name, "api")
    assert workload is not None
    assert workload["spec"]["template"]["spec"]["containers"][0]["image"] == f"{repository}:{pinned}"
    # the inventory and the logs keep the version, and the logs add the digests
    assert {r["version"] for r in sql("SELECT version FROM customer_component_versions WHERE component = 'api'")} == {
        "v1.2.0"
    }
    logs = checked_stack.logs(started["upgradeId"])["logs"]
    assert {(e["version_after"], e["target_digest"], e["rollback_digest"]) for e in logs} == {
        ("v1.2.0", digests["v1.2.0"], digests["v1.1.0"])
    }

    # and the images report names both digests for a registry's cleanup policy to keep
    assert fleet_images() == {
        "images": [
            {"repository": repository, "digest": digests["v1.1.0"], "tags": ["v1.1.0"], "running": 0, "rollbackFor": 3,
             "customers": ids},
            {"repository": repository, "digest": digests["v1.2.0"], "tags": ["v1.2.0"], "running": 3, "rollbackFor": 0,
             "customers": ids},
        ],
        "unresolved": 9,  # dashboard, exporter, mosquitto of each: no deploy resolved their images
    }  # fmt: skip

    # When one customer is rolled back after its release changed (another value set since): a restore
    checked_stack.cluster.add_release(name, name, values={"api.image.tag": pinned, "api.image.repository": repository,
                                                          "dashboard.image.tag": "v1.9.1"})  # fmt: skip
    code, answer = rollback(started["upgradeId"], ids[0])
    assert code == 202, answer
    assert checked_stack.wait_execution(answer["jobId"])["status"] == "SUCCEEDED"

    # Then helm set the rollback image's digest
    restores = [j for j in checked_stack.cluster.created_jobs if "helm-restore-" in j.manifest["metadata"]["name"]]
    assert [set_strings(job) for job in restores] == [[f"api.image.tag=v1.1.0@{digests['v1.1.0']}"]]
    # and the report says it runs the rollback image now
    by_digest = {image["digest"]: image for image in fleet_images()["images"]}
    assert (by_digest[digests["v1.1.0"]]["running"], by_digest[digests["v1.1.0"]]["rollbackFor"]) == (1, 2)
    assert by_digest[digests["v1.2.0"]]["running"] == 2


def _set_string(job: tuple[str, list[str]]) -> str:
    return job[1][job[1].index("--set-string") + 1]


def test_a_blue_green_slot_is_pinned_and_still_switched_finalized_and_rolled_back(
    checked_stack,
    make_customers,
    registry,
    push,
    sql,
):
    # Given two blue-green customers (api v1.1.0 on blue, the chart's default) naming a repository of the registry
    repository = f"{registry.host}/pinned/bluegreen-api"
    digests = {tag: push("pinned/bluegreen-api", tag, f"bg {tag}".encode()) for tag in ("v1.1.0", "v1.2.0", "v1.3.0")}
    first, second = make_customers(2, repositories={"api": repository})
    for customer_id in (first, second):
        name = release_of(customer_id)
        checked_stack.cluster.add_release(name, name, chart_name=BLUEGREEN, values={"api.image.repository": repository})
    pinned = {tag: f"{tag}@{digest}" for tag, digest in digests.items()}

    # When api v1.2.0 is deployed blue-green to both
    started = deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True)
    assert checked_stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then the slot step pinned green to the resolved digest, and the switch still happened
    for customer_id in (first, second):
        jobs = jobs_of(checked_stack.cluster, customer_id)
        # (a switch that took the pinned slot for another version would refuse: no switch Job)
        assert [op for op, _ in jobs] == ["slot", "switch"]
        slot, switch = jobs
        assert (slot[0], _set_string(slot)) == ("slot", f"api.slots.green.tag={pinned['v1.2.0']}")
        assert (switch[0], _set_string(switch)) == ("switch", "api.activeSlot=green")
        assert api_slots(checked_stack.cluster, customer_id) == {
            "active": "green", "tags": {"blue": "v1.1.0", "green": pinned["v1.2.0"]}
        }  # fmt: skip
        green = deployment(checked_stack.cluster, customer_id, "green")
        assert green is not None
        assert green["spec"]["template"]["spec"]["containers"][0]["image"] == f"{repository}:{pinned['v1.2.0']}"
        assert inventory(sql, customer_id) == "v1.2.0"  # the version, not the pinned value
    logs = checked_stack.logs(started["upgradeId"])["logs"]
    assert {(e["status"], e["version_before"], e["version_after"], e["target_digest"], e["rollback_digest"])
            for e in logs} == {("completed", "v1.1.0", "v1.2.0", digests["v1.2.0"], digests["v1.1.0"])}  # fmt: skip

    # When v1.3.0 goes onto blue: for the first customer kept, for the second with its old slot finalized
    kept = deploy(component="api", version="v1.3.0", strategy="all", blueGreen=True, customerIds=[first])
    assert checked_stack.wait_execution(kept["jobId"])["status"] == "SUCCEEDED"
    final = deploy(component="api", version="v1.3.0", strategy="all", blueGreen=True, finalizeOldSlot=True,
                   customerIds=[second])  # fmt: skip
    assert checked_stack.wait_execution(final["jobId"])["status"] == "SUCCEEDED"

    # Then blue runs v1.3.0 by its digest and serves; green keeps its pinned v1.2.0 for a rollback, or is finalized
    assert api_slots(checked_stack.cluster, first) == {
        "active": "blue", "tags": {"blue": pinned["v1.3.0"], "green": pinned["v1.2.0"]}
    }  # fmt: skip
    assert [op for op, _ in jobs_of(checked_stack.cluster, second)][-3:] == ["slot", "switch", "finalize"]
    finalized = {"active": "blue", "tags": {"blue": pinned["v1.3.0"], "green": ""}}
    assert api_slots(checked_stack.cluster, second) == finalized
    for upgrade in (kept, final):
        [row] = checked_stack.logs(upgrade["upgradeId"])["logs"]
        assert (row["status"], row["version_before"], row["version_after"]) == ("completed", "v1.2.0", "v1.3.0")
        assert (row["target_digest"], row["rollback_digest"]) == (digests["v1.3.0"], digests["v1.2.0"])

    # When the first customer's v1.3.0 upgrade is rolled back
    code, answer = rollback(kept["upgradeId"], first)
    assert code == 202, answer
    assert checked_stack.wait_execution(answer["jobId"])["status"] == "SUCCEEDED"

    # Then the Service switched back to green, whose pinned v1.2.0 counts as the version to return to; nothing
    # was reinstalled (the slot kept its pinned value), and the row names the digest it restores
    entry = next(e for e in checked_stack.logs(kept["upgradeId"], operation="rollback")["logs"]
                 if e["id"] == answer["rollbackId"])  # fmt: skip
    assert (entry["status"], entry["version_before"], entry["version_after"]) == ("completed", "v1.3.0", "v1.2.0")
    assert entry["target_digest"] == digests["v1.2.0"]
    assert jobs_of(checked_stack.cluster, first)[-1][0] == "switch"
    assert _set_string(jobs_of(checked_stack.cluster, first)[-1]) == "api.activeSlot=green"
    assert api_slots(checked_stack.cluster, first) == {
        "active": "green", "tags": {"blue": pinned["v1.3.0"], "green": pinned["v1.2.0"]}
    }  # fmt: skip
    assert inventory(sql, first) == "v1.2.0"


def test_a_train_installs_every_components_resolved_digest_and_its_rollback_restores_each_rollback_digest(
    checked_stack,
    make_customers,
    registry,
    push,
    sql,
):
    # Given 2 customers on api v1.1.0 and dashboard v1.9.0 whose releases name repositories of the real registry
    before = {"api": "v1.1.0", "dashboard": "v1.9.0"}
    train = {"api": "v2.0.0", "dashboard": "v2.0.0"}
    repositories = {c: f"{registry.host}/pinned-train/{c}" for c in train}
    digests = {(c, tag): push(f"pinned-train/{c}", tag, f"{c} {tag}".encode())
               for c in train for tag in (before[c], train[c])}  # fmt: skip
    ids = make_customers(2, versions=before, repositories=repositories)
    names = [f"customer-{customer_id.removeprefix('cust_')}" for customer_id in ids]
    values = {f"{c}.image.{key}": value for c in train
              for key, value in (("tag", before[c]), ("repository", repositories[c]))}  # fmt: skip
    for name in names:
        checked_stack.cluster.add_release(name, name, values=values)

    # When the train api v2.0.0 + dashboard v2.0.0 is deployed
    response = invoke("api_deploy", api_event("api_deploy", body={"components": train, "strategy": "all"}))
    assert response["statusCode"] == 202, response["body"]
    started = body(response)
    assert checked_stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then every helm Job set both components' tags pinned to the digests pushed
    pinned = {c: f"v2.0.0@{digests[(c, 'v2.0.0')]}" for c in train}
    upgrades = [j for j in checked_stack.cluster.created_jobs if "helm-upgrade-" in j.manifest["metadata"]["name"]]
    assert len(upgrades) == 2
    assert all(set_strings(job) == [f"{c}.image.tag={pinned[c]}" for c in train] for job in upgrades)
    for name in names:  # the releases hold them and every Deployment runs its image by digest
        record = checked_stack.cluster.release_record(name, name)
        assert record is not None and {c: record["config"][c]["image"]["tag"] for c in train} == pinned
        for c in train:
            workload = checked_stack.cluster.workload(name, name, c)
            assert workload is not None
            assert workload["spec"]["template"]["spec"]["containers"][0]["image"] == f"{repositories[c]}:{pinned[c]}"
    # the logs show the first component's digests in the row, the other's in its components
    for entry in checked_stack.logs(started["upgradeId"])["logs"]:
        assert (entry["target_digest"], entry["rollback_digest"]) == (digests[("api", "v2.0.0")],
                                                                       digests[("api", "v1.1.0")])  # fmt: skip
        dashboard = entry["components"]["dashboard"]
        assert (dashboard["after"], dashboard["imageRepository"]) == ("v2.0.0", repositories["dashboard"])
        assert (dashboard["targetDigest"], dashboard["rollbackDigest"]) == (
            digests[("dashboard", "v2.0.0")], digests[("dashboard", "v1.9.0")])  # fmt: skip

    # the images report names every component's digests (the train's second one's from the rows' components)
    assert fleet_images() == {
        "images": [
            {"repository": repositories[c], "digest": digests[(c, tag)], "tags": [tag], "running": running,
             "rollbackFor": 2 - running, "customers": ids}
            for c in train for tag, running in sorted([(before[c], 0), (train[c], 2)], key=lambda t: digests[(c, t[0])])
        ],
        "unresolved": 4,  # exporter and mosquitto of each: no deploy resolved their images
    }  # fmt: skip

    # When one customer is rolled back after its release changed (another value set since): a restore
    checked_stack.cluster.add_release(
        names[0], names[0],
        values={**values, **{f"{c}.image.tag": pinned[c] for c in train}, "exporter.image.tag": "v1.0.1"},
    )  # fmt: skip
    code, answer = rollback(started["upgradeId"], ids[0])
    assert code == 202, answer
    assert checked_stack.wait_execution(answer["jobId"])["status"] == "SUCCEEDED"

    # Then one helm upgrade set each component back to its rollback image's digest
    restores = [j for j in checked_stack.cluster.created_jobs if "helm-restore-" in j.manifest["metadata"]["name"]]
    assert [sorted(set_strings(job)) for job in restores] == [
        [f"{c}.image.tag={before[c]}@{digests[(c, before[c])]}" for c in train]
    ]
    record = checked_stack.cluster.release_record(names[0], names[0])
    assert record is not None and record["config"]["exporter"]["image"]["tag"] == "v1.0.1"  # kept
    rolled = checked_stack.logs(started["upgradeId"], operation="rollback")["logs"]
    assert rolled[0]["components"]["dashboard"]["targetDigest"] == digests[("dashboard", "v1.9.0")]
