"""Digests pinned (issue 22, docs/images.md): the digest the pre-flight resolved in a real registry (docker-registry
on 127.0.0.1, images pushed with skopeo) is what helm installs in every wave (`--set-string
api.image.tag=v1.2.0@sha256:…`), what the simulated release then holds and renders, and what the logs show;
the inventory keeps showing the version; a rollback restores the rollback digest. The real state machine, the
real API, real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import call, deploy, rollback

pytestmark = pytest.mark.e2e


def fleet_images() -> dict[str, Any]:
    code, answer = call("api_customers", "api_customers_fleet_images", "/api/fleet/images", {})
    assert code == 200, answer
    return answer


def _helm_values(job: Any) -> list[str]:
    container = job.manifest["spec"]["template"]["spec"]["containers"][0]
    argv = list(container["command"]) + list(container["args"])
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set-string"]


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
    assert all(_helm_values(job) == [f"api.image.tag={pinned}"] for job in upgrades)
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
    assert [_helm_values(job) for job in restores] == [[f"api.image.tag=v1.1.0@{digests['v1.1.0']}"]]
    # and the report says it runs the rollback image now
    by_digest = {image["digest"]: image for image in fleet_images()["images"]}
    assert (by_digest[digests["v1.1.0"]]["running"], by_digest[digests["v1.1.0"]]["rollbackFor"]) == (1, 2)
    assert by_digest[digests["v1.2.0"]]["running"] == 2
