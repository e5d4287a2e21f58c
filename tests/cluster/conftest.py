from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
from upgrader.cluster.access import FileTokenSource
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import ClusterConfig, HelmJobSpec, JobState

from upgradectl.local.cluster import SimulatedCluster

_ids = itertools.count(1000)


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(job_duration_seconds=0.05, poll_interval=0.01) as running:
        yield running


@pytest.fixture
def config(cluster: SimulatedCluster) -> ClusterConfig:
    return ClusterConfig(mode="url", api_url=cluster.url, token_file=str(cluster.jobs_token_file),
                         max_output_bytes=2048)  # fmt: skip


def jobs_configuration(cluster: SimulatedCluster, *, reader: bool = False) -> kubernetes.client.Configuration:
    """A client configuration that acts as one of the product's identities (its token file), so RBAC
    applies: the jobs identity (start, check, reconcile), or with `reader` the reader identity (sync,
    rollout checks)."""
    configuration = kubernetes.client.Configuration(host=cluster.url)
    tokens = FileTokenSource(str(cluster.reader_token_file if reader else cluster.jobs_token_file))
    tokens.refresh_hook(configuration)
    configuration.refresh_api_key_hook = tokens.refresh_hook  # type: ignore[assignment]
    return configuration


@pytest.fixture
def gateway(cluster: SimulatedCluster, config: ClusterConfig) -> Iterator[KubernetesClusterGateway]:
    """The product's gateway as the jobs identity."""
    configuration = jobs_configuration(cluster)
    configuration.retries = 0  # a simulated fault must surface, not be retried by urllib3
    with kubernetes.client.ApiClient(configuration) as api_client:
        yield KubernetesClusterGateway(api_client, config)


@pytest.fixture
def reader_gateway(cluster: SimulatedCluster, config: ClusterConfig) -> Iterator[KubernetesClusterGateway]:
    """The product's gateway as the reader identity (what check_rollout and the sync use)."""
    configuration = jobs_configuration(cluster, reader=True)
    configuration.retries = 0
    with kubernetes.client.ApiClient(configuration) as api_client:
        yield KubernetesClusterGateway(
            api_client, config.model_copy(update={"token_file": str(cluster.reader_token_file)})
        )


@pytest.fixture
def make_spec() -> Callable[..., HelmJobSpec]:
    """A spec with a fresh upgrade id and customer per call (tests never share Jobs)."""

    def make(**overrides: Any) -> HelmJobSpec:
        n = next(_ids)
        values: dict[str, Any] = {
            "upgrade_id": n,
            "log_id": n * 10,
            "customer_id": f"cust_{n}",
            "component": "api",
            "namespace": f"customer-{n}",
            "release": "stack",
            "operation": "upgrade",
            "version": "v2.0.0",
            "chart_version": "1.5.0",  # the newest chart: the one an auto-created release runs
            "attempt": 1,
        }
        values.update(overrides)
        return HelmJobSpec(**values)

    return make


def wait_finished(gateway: KubernetesClusterGateway, spec: HelmJobSpec, timeout: float = 60.0) -> JobState:
    deadline = time.monotonic() + timeout
    while True:
        state = gateway.get_helm_job(spec)
        if state.finished or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy (returned); fail after a generous `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.01)
