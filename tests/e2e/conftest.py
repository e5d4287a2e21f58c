from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.api.helpers import call
from tests.images.conftest import proxy, push, registry, skopeo  # noqa: F401  (fixtures: a real registry per module)
from tests.support.event_schemas import recorded_events, schema_errors
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.runtime import LocalRuntime


class Stack:
    def __init__(self, runtime: LocalRuntime, cluster: SimulatedCluster) -> None:
        self.runtime = runtime
        self.cluster = cluster

    def status(self, upgrade_id: str) -> dict[str, Any]:
        code, data = call("api_upgrades", "api_upgrades_status", f"/api/upgrades/{upgrade_id}/status",
                          {"upgradeId": upgrade_id})  # fmt: skip
        assert code == 200, data
        return data

    def logs(self, upgrade_id: str, **query: str) -> dict[str, Any]:
        code, data = call("api_upgrades", "api_upgrades_logs", f"/api/upgrades/{upgrade_id}/logs",
                          {"upgradeId": upgrade_id}, query)  # fmt: skip
        assert code == 200, data
        return data

    def wait_for_status(self, upgrade_id: str, wanted: Callable[[dict[str, Any]], bool], timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            data = self.status(upgrade_id)
            if wanted(data):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"status never matched; last: {data}")
            time.sleep(0.1)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition never became true")
            time.sleep(0.05)

    def wait_execution(self, name: str, timeout: float = 120) -> dict[str, Any]:
        return self.runtime.wait(name, timeout=timeout)


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(job_duration_seconds=0.05) as sim:
        yield sim


@pytest.fixture
def make_customers(make_customers: Callable[..., list[str]], cluster: SimulatedCluster) -> Callable[..., list[str]]:
    """Customers in the inventory and, like in a real fleet, a deployed Helm release in the cluster."""

    def make(n: int, **kwargs: Any) -> list[str]:
        ids = make_customers(n, **kwargs)
        for cid in ids:
            name = f"customer-{cid.replace('_', '-').removeprefix('cust-')}"
            cluster.add_release(name, name)
        return ids

    return make


@pytest.fixture
def stack(env: dict[str, str], cluster: SimulatedCluster, database_url: str) -> Iterator[Stack]:
    with LocalRuntime(database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file), kube_reader_token_file=str(cluster.reader_token_file),
                      poll_seconds=0) as runtime:  # fmt: skip
        yield Stack(runtime, cluster)


def set_strings(job: Any) -> list[str]:
    """The `--set-string` values of a helm Job the simulated cluster was asked to create, in order."""
    container = job.manifest["spec"]["template"]["spec"]["containers"][0]
    argv = list(container["command"]) + list(container["args"])
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set-string"]


@pytest.fixture
def checked_stack(env: dict[str, str], cluster: SimulatedCluster, database_url: str) -> Iterator[Stack]:
    """The stack with the images' pre-flight required (IMAGE_PREFLIGHT=required): every customer's images resolved
    in a real registry (tests/images/conftest.py's fixtures) before the first wave, and re-checked before each."""
    with LocalRuntime(database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file),
                      kube_reader_token_file=str(cluster.reader_token_file), poll_seconds=0,
                      extra_env={"IMAGE_PREFLIGHT": "required"}) as runtime:  # fmt: skip
        yield Stack(runtime, cluster)


@pytest.fixture(autouse=True)
def every_event_matches_its_published_schema(request: pytest.FixtureRequest, database_url: str) -> Iterator[None]:
    """After each test that ran the stack: every event it recorded (what the publisher sends, progressive
    upgrades' included) passes its schema in docs/events/ under an independent Draft 2020-12 validator.

    Breakage tried: the schemas' strategy enum without progressive (as it was): tests/e2e/test_progressive.py
    fails here; and an event detail with an extra field the schema does not name fails the test that sent it."""
    yield
    if "env" not in request.fixturenames:  # the database was not this test's (env truncates it first)
        return
    sent = recorded_events(database_url)
    problems = schema_errors(sent)
    assert problems == [], f"{len(problems)} of {len(sent)} events do not match their schema: {problems[:5]}"
