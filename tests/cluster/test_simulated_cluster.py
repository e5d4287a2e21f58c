"""The simulated cluster itself: lifecycle, outcome controls, what it adds to a plain API server."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import ClusterConfig, HelmJobSpec

from tests.cluster.conftest import jobs_configuration, wait_finished, wait_until
from upgradectl.local.cluster import SimulatedCluster

MakeSpec = Callable[..., HelmJobSpec]


def gateway_for(cluster: SimulatedCluster) -> KubernetesClusterGateway:
    """The product's gateway, acting as the jobs identity (RBAC applies)."""
    config = ClusterConfig(mode="url", api_url=cluster.url, token_file=str(cluster.jobs_token_file))
    return KubernetesClusterGateway(kubernetes.client.ApiClient(jobs_configuration(cluster)), config)


def test_stop_joins_the_thread_and_frees_the_port() -> None:
    before = set(threading.enumerate())
    cluster = SimulatedCluster().start()
    port = int(cluster.url.rsplit(":", 1)[1])
    assert cluster.running
    cluster.stop()  # raises when the thread has not stopped within its (generous) deadline
    assert not cluster.running
    assert set(threading.enumerate()) <= before
    with socket.socket() as probe:  # nothing listens any more, and the port can be bound again
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        _ = cluster.url


def test_stop_ends_open_connections_and_watches(make_spec: MakeSpec) -> None:
    ended = threading.Event()
    with SimulatedCluster(job_duration_seconds=0.01) as cluster:
        gateway = gateway_for(cluster)  # keeps its connection alive in its pool
        spec = make_spec()
        gateway.start_helm_job(spec)
        wait_finished(gateway, spec)
        core = kubernetes.client.CoreV1Api(
            kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))
        )

        def watch() -> None:
            for _ in kubernetes.watch.Watch().stream(core.list_namespaced_pod, "upgrade-system", timeout_seconds=600):
                pass
            ended.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        wait_until(lambda: cluster._objects is not None and any(cluster._objects._watches.values()), what="a watch")
    # stop() returned (it raises when its thread outlives a generous deadline): the watch was ended, not waited for
    assert ended.wait(30)
    assert not any(t.name == "simulated-cluster" for t in threading.enumerate())


def test_pod_logs_are_plain_text(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    gateway.start_helm_job(spec)
    wait_finished(gateway, spec)
    pods: Any = kubernetes.client.CoreV1Api(
        kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))
    ).list_namespaced_pod("upgrade-system")
    pod = pods.items[0].metadata.name
    with urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces/upgrade-system/pods/{pod}/log") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert resp.read().decode().startswith('Release "stack" has been upgraded.')


def test_label_selector_is_honoured(
    cluster: SimulatedCluster, make_spec: MakeSpec, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-x", "stack")
    cluster.add_release("customer-x", "other")
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)))
    selected: Any = core.list_namespaced_secret("customer-x", label_selector="owner=helm,name=other")
    everything = core.list_namespaced_secret("customer-x")
    assert [s.metadata.name for s in selected.items] == ["sh.helm.release.v1.other.v1"]
    assert len(everything.items) == 2


def test_upgrade_of_a_pending_release_is_refused_like_helm(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release, status="pending-upgrade", revision=2)
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "failed"
    assert "another operation (install/upgrade/rollback) is in progress" in (state.error or "")
    assert cluster.release_history(spec.namespace, spec.release)[-1][:2] == (2, "pending-upgrade")


def test_missing_release_fails_when_not_auto_created(make_spec: MakeSpec) -> None:
    with SimulatedCluster(job_duration_seconds=0.01, auto_create_releases=False) as cluster:
        gateway = gateway_for(cluster)
        spec = make_spec()
        cluster.onboard(spec.namespace)  # a customer namespace without the release
        gateway.start_helm_job(spec)
        state = wait_finished(gateway, spec)
    assert state.phase == "failed"
    assert "has no deployed releases" in (state.error or "")


def test_failure_rate_is_seeded_and_repeatable(make_spec: MakeSpec) -> None:
    def outcomes(seed: int) -> list[str]:
        with SimulatedCluster(job_duration_seconds=0.0, failure_rate=0.5, seed=seed, poll_interval=0.005) as c:
            gateway = gateway_for(c)
            results: list[str] = []
            for i in range(12):
                spec = make_spec(upgrade_id=1, customer_id=f"c{i}", namespace=f"ns-{i}")
                gateway.start_helm_job(spec)
                results.append(wait_finished(gateway, spec).phase)  # one at a time: a stable draw order
            return results

    first, again = outcomes(7), outcomes(7)
    assert first == again
    assert {"succeeded", "failed"} == set(first)


def test_outcome_callable_wins_over_fail_customers(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.fail_customers.add(spec.customer_id)
    cluster.outcome = lambda manifest: "succeed"
    gateway.start_helm_job(spec)
    assert wait_finished(gateway, spec).phase == "succeeded"


def test_hold_by_predicate_and_release_all(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    held, free = make_spec(component="dashboard"), make_spec()
    cluster.hold(lambda m: m["metadata"]["labels"]["upgrades.example.com/component"] == "dashboard")
    gateway.start_helm_job(held)
    gateway.start_helm_job(free)
    assert wait_finished(gateway, free).phase == "succeeded"
    assert gateway.get_helm_job(held).phase == "running"
    cluster.release()
    assert wait_finished(gateway, held).phase == "succeeded"


def test_created_jobs_keep_order_and_time(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    specs = [make_spec() for _ in range(3)]
    before = time.time()
    for spec in specs:
        gateway.start_helm_job(spec)
    recorded = cluster.created_jobs
    assert [r.index for r in recorded] == [0, 1, 2]
    assert [r.name for r in recorded] == [gateway.job_name(s) for s in specs]
    assert before <= recorded[0].time <= recorded[1].time <= recorded[2].time <= time.time()


def test_fault_only_hits_matching_paths(cluster: SimulatedCluster) -> None:
    cluster.fail_next(2, status=503, path_contains="/secrets")
    with urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces/a/pods") as resp:
        assert resp.status == 200
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces/a/secrets")
        assert caught.value.code == 503
    with urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces/a/secrets") as resp:
        assert resp.status == 200


def test_controls_need_a_running_cluster() -> None:
    with pytest.raises(RuntimeError):
        SimulatedCluster().add_release("ns", "stack")
