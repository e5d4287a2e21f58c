# mypy: disable-error-code="arg-type,union-attr,operator,func-returns-value"
# (raw dict bodies and the client's Optional model fields, as a test of the API server reads them)
"""Faults the simulated API server serves (counted), an unreachable API server, and the accounting
tests assert invariants with: every Job create request with its status, peak running helm Jobs."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import ClusterTransientError, HelmJobSpec

from tests.cluster.conftest import wait_finished, wait_until
from upgradectl.local.cluster import SimulatedCluster

MakeSpec = Callable[..., HelmJobSpec]


def get(cluster: SimulatedCluster, path: str, method: str = "GET") -> int:
    request = urllib.request.Request(f"{cluster.url}{path}", method=method, data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_path_filtered_fault_serves_exactly_its_count(cluster: SimulatedCluster) -> None:
    fault = cluster.fail_next(2, status=503, path_contains="/secrets")
    assert get(cluster, "/api/v1/namespaces/a/pods") == 200  # not its path
    assert [get(cluster, "/api/v1/namespaces/a/secrets") for _ in range(3)] == [503, 503, 200]
    assert (fault.served, fault.remaining, fault.active) == (2, 0, False)
    assert cluster.unserved_faults() == []


def test_a_fault_filtered_by_method_and_path(cluster: SimulatedCluster) -> None:
    fault = cluster.fail(500, times=5, method="POST", path_contains="/jobs")
    assert get(cluster, "/apis/batch/v1/namespaces/upgrade-system/jobs") == 200  # a GET passes
    assert get(cluster, "/apis/batch/v1/namespaces/upgrade-system/jobs", "POST") == 500
    assert fault.served == 1 and cluster.unserved_faults() == [fault]
    assert (
        cluster._take_fault("/apis/batch/v1/namespaces/upgrade-system/jobs", "POST") is fault
    )  # a path filter matches
    assert fault.served == 2


def test_a_window_fault_answers_every_attempt_the_client_makes(cluster: SimulatedCluster) -> None:
    # Given 429 on every POST .../jobs for ten minutes, and a client that retries 429s three times
    fault = cluster.fail(429, seconds=600, method="POST", path_contains="/jobs", retry_after=2)
    configuration = kubernetes.client.Configuration(host=cluster.url)
    configuration.retries = urllib3.Retry(total=3, status=3, status_forcelist=[429], allowed_methods=None,
                                          backoff_factor=0, respect_retry_after_header=False)  # fmt: skip
    with kubernetes.client.ApiClient(configuration) as api_client:
        batch = kubernetes.client.BatchV1Api(api_client)
        job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
        with pytest.raises((ApiException, urllib3.exceptions.MaxRetryError)):
            batch.create_namespaced_job("upgrade-system", job)
        # Then each of the four attempts met the fault, and nothing was created
        assert fault.served == 4
        assert batch.list_namespaced_job("upgrade-system").items == []
    assert [r.status for r in cluster.job_create_requests] == [429] * 4
    assert cluster.created_jobs == []  # none reached the API server's storage


def test_429_carries_retry_after(cluster: SimulatedCluster) -> None:
    cluster.fail(429, times=1, retry_after=7)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces/a/pods", timeout=10)
    assert (caught.value.code, caught.value.headers["Retry-After"]) == (429, "7")


def test_a_fault_needs_a_count_or_a_window(cluster: SimulatedCluster) -> None:
    with pytest.raises(ValueError, match="times"):
        cluster.fail(500)


def test_an_unreachable_api_server_refuses_then_comes_back_on_the_same_port(cluster: SimulatedCluster) -> None:
    url = cluster.url
    port = int(url.rsplit(":", 1)[1])
    outage = cluster.unreachable(600)  # refused until ended
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # connection refused
    cluster.end_outage(outage)
    assert cluster.url == url and get(cluster, "/version") == 200


def test_an_outage_ends_by_itself(cluster: SimulatedCluster) -> None:
    outage = cluster.unreachable(0.2)
    wait_until(lambda: outage.ended and get(cluster, "/version") == 200, timeout=30, what="the API server back")


def test_a_reset_outage_cuts_every_request_and_counts_them(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release)
    outage = cluster.unreachable(600, mode="reset")
    for _ in range(2):
        with pytest.raises(ClusterTransientError):  # the product sees the connection die: transient
            gateway.release_status(spec.namespace, spec.release)
    assert outage.served >= 2
    cluster.end_outage(outage)
    assert gateway.release_status(spec.namespace, spec.release).status == "deployed"


def test_jobs_keep_running_while_the_api_is_unreachable(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release)
    gateway.start_helm_job(spec)
    wait_until(lambda: cluster.running_jobs() == 1, what="the Job running")
    outage = cluster.unreachable(600)
    wait_until(lambda: cluster.running_jobs() == 0, what="the Job finished behind the outage")
    cluster.end_outage(outage)
    assert wait_finished(gateway, spec).phase == "succeeded"


def log_status(cluster: SimulatedCluster, namespace: str, pod: str, token: str | None = None) -> tuple[int, str]:
    """(status, body) of GET pods/<pod>/log as `token`'s identity (none: an admin)."""
    request = urllib.request.Request(f"{cluster.url}/api/v1/namespaces/{namespace}/pods/{pod}/log?container=helm",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def test_an_unreachable_kubelet_refuses_the_logs_of_matching_pods_only(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    """Breakage tried: `_serve_log` without its kubelet check: the log is served (200), the test fails."""
    # Given two finished Jobs, and the kubelet of the first one's node unreachable twice
    first, second = make_spec(), make_spec()
    for spec in (first, second):
        gateway.start_helm_job(spec)
        wait_finished(gateway, spec)
    (pod,) = cluster.pods(gateway.job_name(first))
    (other,) = cluster.pods(gateway.job_name(second))
    fault = cluster.kubelet_unreachable(502, times=2, pod_contains=gateway.job_name(first))
    # Then another pod's log, a pod that does not exist (404 first, as kube-apiserver looks it up before
    # the node) and a reader RBAC forbids (403) are not served the fault ...
    assert log_status(cluster, "upgrade-system", other)[0] == 200
    assert log_status(cluster, "upgrade-system", pod + "-x")[0] == 404
    assert log_status(cluster, "upgrade-system", pod, cluster.runner_token)[0] == 403
    assert fault.served == 0 and cluster.unserved_faults() == [fault]
    # ... the pod's own log is: the API server's Status naming the kubelet it could not reach, twice
    status, body = log_status(cluster, "upgrade-system", pod, cluster.jobs_token)
    assert status == 502
    error = json.loads(body)
    assert (error["kind"], error["code"], error["reason"]) == ("Status", 502, "BadGateway")
    assert error["message"] == (f'Get "https://127.0.0.1:10250/containerLogs/upgrade-system/{pod}/helm": '
                                "dial tcp 127.0.0.1:10250: connect: connection refused")  # fmt: skip
    assert log_status(cluster, "upgrade-system", pod)[0] == 502
    # and then the log again; nothing else of the Job changed
    assert log_status(cluster, "upgrade-system", pod) == (200, cluster.job_log("upgrade-system", pod))
    assert (fault.served, cluster.unserved_faults(), cluster.kubelet_faults) == (2, [], [fault])
    assert cluster.faults == []  # not a fault in front of the API server
    assert gateway.get_helm_job(first).phase == "succeeded"


def test_a_kubelet_fault_needs_a_count_or_a_window(cluster: SimulatedCluster) -> None:
    with pytest.raises(ValueError, match="times"):
        cluster.kubelet_unreachable()


# --- accounting ----------------------------------------------------------------------------------------


def test_every_job_create_request_is_counted_with_its_status(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.fail_next(1, status=500, method="POST", path_contains="/jobs")
    with pytest.raises(ClusterTransientError):
        gateway.start_helm_job(spec)  # 500
    gateway.start_helm_job(spec)  # 201
    gateway.start_helm_job(spec)  # 409, adopted
    job: dict[str, Any] = gateway.build_job_manifest(spec)
    job["metadata"]["name"] += "-x"
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        configuration = api_client.configuration
        configuration.api_key = {"authorization": f"Bearer {cluster.runner_token}"}  # helm's SA may not create Jobs
        with pytest.raises(ApiException):
            kubernetes.client.BatchV1Api(api_client).create_namespaced_job("upgrade-system", job)
    requests = [(r.name == gateway.job_name(spec), r.status, r.user) for r in cluster.job_create_requests]
    assert requests == [
        (True, 500, ""), (True, 201, "customer-upgrades-jobs:simulated"),
        (True, 409, "customer-upgrades-jobs:simulated"),
        (False, 403, "system:serviceaccount:upgrade-system:upgrade-runner"),
    ]  # fmt: skip
    assert [(j.name, j.status) for j in cluster.created_jobs] == [(gateway.job_name(spec), 201),
                                                                  (gateway.job_name(spec), 409)]  # fmt: skip


def test_peak_running_jobs_overall_and_per_upgrade(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    cluster.hold()
    first = [make_spec(upgrade_id=71) for _ in range(3)]
    second = [make_spec(upgrade_id=72) for _ in range(2)]
    for spec in first + second:
        gateway.start_helm_job(spec)
    wait_until(lambda: cluster.running_jobs() == 5, what="five Jobs running")
    assert (cluster.running_jobs(71), cluster.running_jobs(72)) == (3, 2)
    cluster.release()
    wait_until(lambda: cluster.running_jobs() == 0, what="every Job finished")
    after = make_spec(upgrade_id=72)
    gateway.start_helm_job(after)
    wait_finished(gateway, after)
    assert (cluster.peak_running_jobs(), cluster.peak_running_jobs(71), cluster.peak_running_jobs(72)) == (5, 3, 2)
    assert cluster.peak_running_jobs(99) == 0
