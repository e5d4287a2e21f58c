"""A component is one entry of the registry (upgrader.infra.components): registering a fifth one, and editing
nothing else, gives it to the whole product: the deploy request, the cluster configuration, the helm Job's
argv, the simulated chart, the release reading, the status and the list filter (issue 24, item 1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from upgrader.infra.components import REGISTRY, ComponentSpec, SampleChart

from tests.api.helpers import call, deploy

pytestmark = pytest.mark.e2e

BROKER = ComponentSpec("broker", SampleChart("amqp", 5672, older_tag="3.12.0", newer_tag="3.13.0"))


@pytest.fixture
def fifth_component() -> Iterator[ComponentSpec]:
    """The registry with a fifth component while the test runs, then as it was."""
    REGISTRY.add(BROKER)
    try:
        yield BROKER
    finally:
        REGISTRY.remove(BROKER.name)


@pytest.fixture
def cluster(fifth_component, cluster):  # noqa: ARG001 - registered before the simulated chart is built
    return cluster


def test_a_fifth_component_registered_once_is_deployed_through_the_api_to_helm_and_back(
    fifth_component, stack, make_customers, sql
):
    """Breakage tried: the Component type checking a fixed Literal of the four names (the deploy answers 422);
    ClusterConfig's validator merging a fixed dict of the four tag keys (no key for broker: the job spec is
    refused, the upgrade halts); the simulated chart's workloads ranging over a fixed tuple of four (no
    broker Deployment rolls out: the upgrade halts); the list filter's Literal of four (422)."""
    # Given two customers whose releases run the sample chart, which now ships a broker at 3.13.0
    ids = make_customers(2, versions={"broker": "3.13.0"})
    # When broker 3.14.0 is deployed to all of them through the API
    started = deploy(component="broker", version="3.14.0", strategy="all")
    execution = stack.wait_execution(started["jobId"])
    # Then the run succeeds and the status, read back through GET, names the component and both customers done
    assert execution["status"] == "SUCCEEDED", execution
    status = stack.status(started["upgradeId"])
    assert (status["component"], status["status"], status["completed"], status["failed"]) == (
        "broker", "completed", 2, 0,
    )  # fmt: skip
    # and each helm Job set the broker's image tag, under the key the registry gives it
    jobs = [job for job in stack.cluster.created_jobs if job.namespace == "upgrade-system"]
    assert len(jobs) == 2
    for job in jobs:
        args = job.manifest["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--set-string") + 1] == "broker.image.tag=3.14.0"
    # and what each release held before and after was read from the release itself, by the same key
    logs = stack.logs(started["upgradeId"], status="completed")["logs"]
    assert sorted((e["customer_id"], e["version_before"], e["version_after"]) for e in logs) == [
        (cid, "3.13.0", "3.14.0") for cid in ids
    ]
    # and the inventory moved; the list of upgrades filters on the new component
    rows = sql("SELECT version FROM customer_component_versions WHERE component = 'broker'")
    assert [r["version"] for r in rows] == ["3.14.0", "3.14.0"]
    code, listed = call("api_upgrades", "api_upgrades_list", "/api/upgrades", {}, {"component": "broker"})
    assert code == 200, listed
    assert [u["upgradeId"] for u in listed["upgrades"]] == [started["upgradeId"]]
