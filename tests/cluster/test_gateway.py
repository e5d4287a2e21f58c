"""KubernetesClusterGateway against the simulated cluster, over real HTTP with the official client."""

from __future__ import annotations

import re
from collections.abc import Callable

import kubernetes
import pytest
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import (
    ClusterConfig,
    ClusterPermanentError,
    ClusterTransientError,
    HelmJobSpec,
    JobNotFoundError,
)

from tests.cluster.conftest import wait_finished
from upgradectl.local.cluster import SimulatedCluster, flatten_values

MakeSpec = Callable[..., HelmJobSpec]


def test_starting_twice_creates_one_job_and_adopts_it(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    first = gateway.start_helm_job(spec)
    second = gateway.start_helm_job(spec)
    assert first == second == gateway.job_name(spec)
    assert [job.name for job in cluster.created_jobs] == [first, first]  # the second POST got 409
    assert list(cluster.jobs()) == [first]


def test_created_job_is_the_built_manifest(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    gateway.start_helm_job(spec)
    recorded = cluster.created_jobs[0]
    assert recorded.namespace == "upgrade-system"
    assert recorded.manifest == gateway.build_job_manifest(spec)


def test_successful_upgrade_reports_helm_output(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release, revision=4)
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "succeeded"
    assert state.error is None
    assert 'Release "stack" has been upgraded. Happy Helming!' in state.output
    assert f"NAMESPACE: {spec.namespace}" in state.output
    assert "REVISION: 5" in state.output
    release = gateway.release_status(spec.namespace, spec.release)
    assert (release.status, release.revision, release.last_deployed_revision) == ("deployed", 5, 5)
    assert flatten_values(cluster.release_history(spec.namespace, spec.release)[-1][2]) == {"api.image.tag": "v2.0.0"}


def test_failed_upgrade_reports_reason_and_helm_error(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.fail_customers.add(spec.customer_id)
    cluster.add_release(spec.namespace, spec.release, revision=2)
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "failed"
    assert state.error is not None
    assert "BackoffLimitExceeded" in state.error
    assert "exit code 1" in state.error
    assert "Error: UPGRADE FAILED" in state.error
    assert "rolled back due to atomic" in state.output
    # --atomic: revision 3 failed, revision 4 is the automatic rollback to 2.
    release = gateway.release_status(spec.namespace, spec.release)
    assert (release.status, release.revision, release.last_deployed_revision) == ("deployed", 4, 4)


def test_deadline_kill_leaves_release_pending_and_recover_fixes_it(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.outcome = lambda manifest: "timeout" if manifest["metadata"]["name"] == gateway.job_name(spec) else None
    cluster.add_release(spec.namespace, spec.release, revision=3)
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "failed"
    assert state.error is not None and "DeadlineExceeded" in state.error
    stuck = gateway.release_status(spec.namespace, spec.release)
    assert (stuck.status, stuck.revision, stuck.last_deployed_revision, stuck.stuck) == ("pending-upgrade", 4, 3, True)

    recover = make_spec(
        upgrade_id=spec.upgrade_id,
        customer_id=spec.customer_id,
        namespace=spec.namespace,
        operation="recover",
        version=None,
        revision=stuck.last_deployed_revision,
    )
    gateway.start_helm_job(recover)
    assert wait_finished(gateway, recover).phase == "succeeded"
    fixed = gateway.release_status(spec.namespace, spec.release)
    assert (fixed.status, fixed.revision, fixed.stuck) == ("deployed", 5, False)


def test_big_logs_are_truncated_to_the_tail(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.log_text = lambda manifest, text: "noise\n" * 5000 + text
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "succeeded"
    assert len(state.output.encode()) <= gateway.config.max_output_bytes
    assert re.match(r"\[truncated \d+ bytes\]\n", state.output)
    assert state.output.rstrip().endswith("TEST SUITE: None")


def test_held_job_stays_running_until_released(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec, later = make_spec(), make_spec()
    name = gateway.job_name(spec)
    cluster.hold(name)
    gateway.start_helm_job(spec)
    # a Job started after it finishes first (a condition, not a time window)
    gateway.start_helm_job(later)
    assert wait_finished(gateway, later).phase == "succeeded"
    assert gateway.get_helm_job(spec).phase == "running"
    assert gateway.active_jobs_for_release(spec.namespace, spec.release) == [name]
    cluster.release(name)
    assert wait_finished(gateway, spec).phase == "succeeded"
    assert gateway.active_jobs_for_release(spec.namespace, spec.release) == []


def test_active_jobs_only_lists_that_release(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    cluster.hold()
    mine = make_spec()
    other_customer = make_spec()
    same_ns_other_release = make_spec(namespace=mine.namespace, release="other")
    for spec in (mine, other_customer, same_ns_other_release):
        gateway.start_helm_job(spec)
    assert gateway.active_jobs_for_release(mine.namespace, "stack") == [gateway.job_name(mine)]


def test_missing_job_is_reported_not_raised(gateway: KubernetesClusterGateway, make_spec: MakeSpec) -> None:
    state = gateway.get_helm_job(make_spec())
    assert state.phase == "missing" and not state.finished


def test_delete_job(cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec) -> None:
    spec = make_spec()
    gateway.start_helm_job(spec)
    gateway.delete_helm_job(spec)
    assert gateway.get_helm_job(spec).phase == "missing"
    gateway.delete_helm_job(spec)  # idempotent
    with pytest.raises(JobNotFoundError):
        gateway.delete_helm_job(spec, missing_ok=False)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_on_create_are_transient(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec, status: int
) -> None:
    spec = make_spec()
    cluster.fail_next(1, status=status, path_contains="/jobs")
    with pytest.raises(ClusterTransientError, match=str(status)):
        gateway.start_helm_job(spec)
    assert cluster.jobs() == {}  # the fault answered before anything was stored
    assert gateway.start_helm_job(spec) == gateway.job_name(spec)  # the retry succeeds


@pytest.mark.parametrize("status", [403, 422])
def test_rejections_are_permanent(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec, status: int
) -> None:
    cluster.fail_next(1, status=status)
    with pytest.raises(ClusterPermanentError, match=str(status)):
        gateway.start_helm_job(make_spec())


def test_server_error_while_reading_a_job_is_transient(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    gateway.start_helm_job(spec)
    cluster.fail_next(1, status=500, path_contains=gateway.job_name(spec))
    with pytest.raises(ClusterTransientError):
        gateway.get_helm_job(spec)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_succeeded_job_whose_log_the_kubelet_cannot_serve_is_succeeded(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec, status: int
) -> None:
    """Breakage tried: `_read_job_log` raising on 5xx again (main: `if exc.status not in (400, 404): raise`):
    get_helm_job raises ClusterTransientError on every look and this test fails."""
    # Given a helm Job that succeeds, on a node whose kubelet the API server cannot reach (a real
    # kube-apiserver answers pods/log with 5xx then)
    spec = make_spec()
    fault = cluster.kubelet_unreachable(status, seconds=600, pod_contains=gateway.job_name(spec))
    gateway.start_helm_job(spec)
    # When the finished Job is looked at
    state = wait_finished(gateway, spec)
    # Then its outcome is the Job's own (succeeded, with its run time), and the record says why there is
    # no helm output: the API server's answer, the kubelet it could not reach
    assert (state.phase, state.error) == ("succeeded", None) and state.seconds is not None
    assert state.output.startswith(f"[helm output unavailable: pod log unavailable: HTTP {status} ")
    assert "10250/containerLogs/upgrade-system/" in state.output and "connection refused" in state.output
    assert fault.served >= 1
    # and the release holds the new version (the outcome the orchestration reads next)
    assert gateway.release_status(spec.namespace, spec.release).versions["api"] == "v2.0.0"


def test_a_failed_job_whose_log_is_unreadable_is_failed_for_the_reasons_its_status_gives(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    """Breakage tried: as above (5xx raised): ClusterTransientError, never a failed outcome."""
    spec = make_spec()
    cluster.fail_customers.add(spec.customer_id)
    cluster.kubelet_unreachable(500, seconds=600, pod_contains=gateway.job_name(spec))
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "failed" and state.error is not None
    # the Job's condition and its pod's exit code, and why helm's own "Error:" line is missing
    assert "BackoffLimitExceeded" in state.error and "exit code 1" in state.error
    assert "pod log unavailable: HTTP 500" in state.error and "Error: UPGRADE FAILED" not in state.error
    assert state.output.startswith("[helm output unavailable: ")


@pytest.mark.parametrize("status", [401, 429])
def test_a_log_read_refused_for_our_token_or_rate_is_transient(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec, status: int
) -> None:
    # A token that expired between mint and use, or throttling: the next look gets the log
    spec = make_spec()
    gateway.start_helm_job(spec)
    wait_finished(gateway, spec)
    cluster.fail_next(1, status=status, path_contains="/log")
    with pytest.raises(ClusterTransientError, match=str(status)):
        gateway.get_helm_job(spec)
    state = gateway.get_helm_job(spec)
    assert state.phase == "succeeded" and "helm output unavailable" not in state.output


def test_unreachable_api_is_transient(make_spec: MakeSpec) -> None:
    config = ClusterConfig(mode="url", api_url="http://127.0.0.1:9")  # discard port: refused
    configuration = kubernetes.client.Configuration(host=config.api_url)
    configuration.retries = 0
    with kubernetes.client.ApiClient(configuration) as api_client, pytest.raises(ClusterTransientError):
        KubernetesClusterGateway(api_client, config).start_helm_job(make_spec())


def test_release_status_deployed_pending_and_missing(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-a", "stack", revision=3)
    cluster.add_release("customer-b", "stack", revision=2)
    cluster.set_release_status("customer-b", "stack", "pending-upgrade")
    cluster.add_release("customer-b", "other", status="failed", revision=1)
    cluster.onboard("customer-c")  # a customer namespace without the release

    deployed = gateway.release_status("customer-a", "stack")
    assert (deployed.status, deployed.revision, deployed.last_deployed_revision) == ("deployed", 3, 3)
    pending = gateway.release_status("customer-b", "stack")
    assert (pending.status, pending.revision, pending.last_deployed_revision) == ("pending-upgrade", 3, 2)
    assert pending.stuck
    missing = gateway.release_status("customer-c", "stack")
    assert (missing.status, missing.revision, missing.last_deployed_revision, missing.exists) == (
        None,
        None,
        None,
        False,
    )
    failed_only = gateway.release_status("customer-b", "other")
    assert (failed_only.status, failed_only.last_deployed_revision) == ("failed", None)


def test_rollback_to_a_named_revision(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec(operation="rollback", version=None, revision=1)
    cluster.add_release(spec.namespace, spec.release, revision=2, values={"api.image.tag": "v1"})
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "succeeded" and "Rollback was a success" in state.output
    assert gateway.release_status(spec.namespace, spec.release).revision == 3


def test_release_status_reads_versions_and_chart_from_the_release_record(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-v", "stack", revision=2, values={"api.image.tag": "v1.1.0"}, chart_version="1.4.0")
    info = gateway.release_status("customer-v", "stack")
    assert (info.status, info.revision, info.last_deployed_revision, info.chart_version) == ("deployed", 2, 2, "1.4.0")
    assert info.versions["api"] == "v1.1.0"  # the user-supplied value
    # components the release was not given a tag for show the chart's default
    defaults = {c: v for c, v in info.versions.items() if c != "api"}
    assert all(defaults.values()) and set(defaults) == {"dashboard", "exporter", "mosquitto"}


def test_an_unreadable_release_secret_is_a_permanent_error_naming_it(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-w", "stack")
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)))
    core.patch_namespaced_secret("sh.helm.release.v1.stack.v1", "customer-w", {"data": {"release": "bm90IGhlbG0="}})
    with pytest.raises(ClusterPermanentError, match=r"sh\.helm\.release\.v1\.stack\.v1 in customer-w is unreadable"):
        gateway.release_status("customer-w", "stack")
