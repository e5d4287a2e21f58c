"""The chart contract for digests, form 2 (issue 22, docs/images.md): a chart that declares `api.image.digest`
(an empty default) gets the tag and the digest the pre-flight resolved in a real registry apart, `--set-string
api.image.tag=v1.2.0 --set-string api.image.digest=sha256:…`, and renders `repository@digest`; a restore pins the
rollback digest the same way; a deploy that resolved no digest empties the value so an earlier digest is not
reused. The real state machine, the real API, real PostgreSQL, the simulated cluster over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader.infra.components import REGISTRY

from tests.api.helpers import deploy, rollback
from upgradectl.local.simcluster.charts import ChartVersion, component_defaults

pytestmark = pytest.mark.e2e

DIGEST_CHART = "1.6.0"  # customer-stack with `<component>.image.digest: ""` in its defaults


def _add_digest_chart(cluster: Any) -> None:
    tags = {spec.name: spec.sample.newer_tag for spec in REGISTRY}
    cluster.add_chart(
        ChartVersion("customer-stack", DIGEST_CHART, DIGEST_CHART, component_defaults(tags, digest_value=True))
    )


def _helm_values(cluster: Any, kind: str) -> list[list[str]]:
    values = []
    for job in cluster.created_jobs:
        if f"helm-{kind}-" in job.manifest["metadata"]["name"]:
            args = job.manifest["spec"]["template"]["spec"]["containers"][0]["args"]
            values.append([args[i + 1] for i, arg in enumerate(args) if arg == "--set-string"])
    return values


def _image(cluster: Any, name: str) -> str:
    workload = cluster.workload(name, name, "api")
    assert workload is not None
    return str(workload["spec"]["template"]["spec"]["containers"][0]["image"])


def _inventory(sql: Any) -> set[str]:
    return {r["version"] for r in sql("SELECT version FROM customer_component_versions WHERE component = 'api'")}


def test_a_chart_that_declares_the_digest_value_gets_the_tag_and_the_digest_apart(
    checked_stack,
    make_customers,
    registry,
    push,
    sql,
):
    # Given two customers on api v1.1.0 whose chart declares api.image.digest, naming a repository of the registry
    repository = f"{registry.host}/apart/api"
    digests = {tag: push("apart/api", tag, f"apart {tag}".encode()) for tag in ("v1.1.0", "v1.2.0")}
    _add_digest_chart(checked_stack.cluster)
    ids = make_customers(2, repositories={"api": repository})
    names = [f"customer-{customer_id.removeprefix('cust_')}" for customer_id in ids]
    for name in names:
        checked_stack.cluster.add_release(name, name, chart_version=DIGEST_CHART,
                                          values={"api.image.tag": "v1.1.0", "api.image.repository": repository})  # fmt: skip

    # When api v1.2.0 is deployed
    started = deploy(component="api", version="v1.2.0", strategy="all")
    assert checked_stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then each helm Job set the tag plain and the digest apart
    assert (
        _helm_values(checked_stack.cluster, "upgrade")
        == [["api.image.tag=v1.2.0", f"api.image.digest={digests['v1.2.0']}"]] * 2
    )
    # the releases hold both, and their Deployments run the image by its digest, as the chart renders it
    record = checked_stack.cluster.release_record(names[0], names[0])
    assert record is not None and record["config"]["api"]["image"] == {
        "tag": "v1.2.0", "digest": digests["v1.2.0"], "repository": repository
    }  # fmt: skip
    assert _image(checked_stack.cluster, names[0]) == f"{repository}@{digests['v1.2.0']}"
    # and the inventory and the logs keep the version
    assert _inventory(sql) == {"v1.2.0"}
    logs = checked_stack.logs(started["upgradeId"])["logs"]
    assert {(e["version_after"], e["target_digest"], e["rollback_digest"]) for e in logs} == {
        ("v1.2.0", digests["v1.2.0"], digests["v1.1.0"])
    }

    # When one customer is rolled back after its release changed since (another value set): a restore
    checked_stack.cluster.add_release(names[0], names[0], chart_version=DIGEST_CHART, values={
        "api.image.tag": "v1.2.0", "api.image.digest": digests["v1.2.0"], "api.image.repository": repository,
        "dashboard.image.tag": "v1.9.1"})  # fmt: skip
    code, answer = rollback(started["upgradeId"], ids[0])
    assert code == 202, answer
    assert checked_stack.wait_execution(answer["jobId"])["status"] == "SUCCEEDED"

    # Then the restore set the rollback image's digest apart too, and the Deployment runs it by its digest
    assert _helm_values(checked_stack.cluster, "restore") == [
        ["api.image.tag=v1.1.0", f"api.image.digest={digests['v1.1.0']}"]
    ]
    assert _image(checked_stack.cluster, names[0]) == f"{repository}@{digests['v1.1.0']}"
    assert _image(checked_stack.cluster, names[1]) == f"{repository}@{digests['v1.2.0']}"


def test_a_deploy_that_resolved_no_digest_empties_the_digest_an_earlier_deploy_set(stack, make_customers, sql):
    # Given a customer whose chart declares api.image.digest, pinned by an earlier deploy to v1.1.0's digest
    old = "sha256:" + "0" * 64
    _add_digest_chart(stack.cluster)
    (customer_id,) = make_customers(1)
    name = f"customer-{customer_id.removeprefix('cust_')}"
    stack.cluster.add_release(name, name, chart_version=DIGEST_CHART,
                              values={"api.image.tag": "v1.1.0", "api.image.digest": old})  # fmt: skip
    assert _image(stack.cluster, name).endswith(f"/api@{old}")

    # When api v1.2.0 is deployed with the images' pre-flight off (no digest resolved)
    started = deploy(component="api", version="v1.2.0")
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then the helm Job emptied the digest (helm --reset-then-reuse-values would have kept the old one)
    assert _helm_values(stack.cluster, "upgrade") == [["api.image.tag=v1.2.0", "api.image.digest="]]
    # and the Deployment runs the new tag, not the old image under it
    assert _image(stack.cluster, name) == f"{REGISTRY.get('api').sample_image_repository()}:v1.2.0"
    assert _inventory(sql) == {"v1.2.0"}


def test_the_rollback_image_is_the_digest_the_release_runs_not_the_one_its_tag_names_today(
    checked_stack,
    make_customers,
    registry,
    push,
):
    # Given a customer whose chart declares api.image.digest, its release pinned to v1.1.0's first image
    repository = f"{registry.host}/exact/api"
    first = push("exact/api", "v1.1.0", b"exact v1.1.0, first build")
    target = push("exact/api", "v1.2.0", b"exact v1.2.0")
    _add_digest_chart(checked_stack.cluster)
    (customer_id,) = make_customers(1, repositories={"api": repository})
    name = f"customer-{customer_id.removeprefix('cust_')}"
    checked_stack.cluster.add_release(name, name, chart_version=DIGEST_CHART, values={
        "api.image.tag": "v1.1.0", "api.image.digest": first, "api.image.repository": repository})  # fmt: skip
    # and the tag v1.1.0 moved to another build since; a sync read the release
    moved = push("exact/api", "v1.1.0", b"exact v1.1.0, rebuilt")
    assert moved != first
    checked_stack.runtime.sync()

    # When api v1.2.0 is deployed
    started = deploy(component="api", version="v1.2.0")
    assert checked_stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then the rollback digest is the image the release ran (repository:v1.1.0@<first>), not the moved tag's
    logs = checked_stack.logs(started["upgradeId"])["logs"]
    assert [(e["target_digest"], e["rollback_digest"]) for e in logs] == [(target, first)]
    # and a rollback installs exactly that image again
    code, answer = rollback(started["upgradeId"], customer_id)
    assert code == 202, answer
    assert checked_stack.wait_execution(answer["jobId"])["status"] == "SUCCEEDED"
    assert _image(checked_stack.cluster, name) == f"{repository}@{first}"
