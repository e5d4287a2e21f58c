"""Post-upgrade health checks: rollout_status and http_health over real HTTP with the official client,
against the simulated cluster's Deployments and service proxy."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.release_reading import deployment_verdict
from upgrader.cluster.types import (
    ClusterConfig,
    ClusterPermanentError,
    ClusterTransientError,
    HelmJobSpec,
    RolloutState,
)
from upgrader.infra import names

from tests.cluster.conftest import wait_finished, wait_until
from upgradectl.local.cluster import SimulatedCluster

MakeSpec = Callable[..., HelmJobSpec]


@pytest.fixture
def gateway(cluster: SimulatedCluster, config: ClusterConfig) -> Iterator[KubernetesClusterGateway]:
    """These tests run helm Jobs (the jobs identity's part) and check the rollout (the reader's part) with
    one gateway: it acts as a test identity in both groups, so RBAC still applies to every call. Which
    identity may do which is tests/cluster/test_simulated_rbac.py's subject."""
    token = cluster.token_for("both-identities", [names.JOBS_KUBERNETES_GROUP, names.READER_KUBERNETES_GROUP])
    configuration = kubernetes.client.Configuration(host=cluster.url)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    configuration.retries = 0  # a simulated fault must surface, not be retried by urllib3
    with kubernetes.client.ApiClient(configuration) as api_client:
        yield KubernetesClusterGateway(api_client, config)


@pytest.fixture
def apps(cluster: SimulatedCluster) -> Iterator[kubernetes.client.AppsV1Api]:
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        yield kubernetes.client.AppsV1Api(api_client)


def run_job(gateway: KubernetesClusterGateway, spec: HelmJobSpec) -> None:
    gateway.start_helm_job(spec)
    assert wait_finished(gateway, spec).phase == "succeeded"


def rollback_of(spec: HelmJobSpec, operation: str = "rollback") -> HelmJobSpec:
    return HelmJobSpec(
        upgrade_id=spec.upgrade_id, log_id=spec.log_id, customer_id=spec.customer_id, component=spec.component,
        namespace=spec.namespace, release=spec.release, operation=operation,  # type: ignore[arg-type]
        revision=1,
    )  # fmt: skip


def wait_rollout(
    gateway: KubernetesClusterGateway, spec: HelmJobSpec, phase: str, timeout: float = 60.0
) -> RolloutState:
    deadline = time.monotonic() + timeout
    while True:
        state = gateway.rollout_status(spec.namespace, spec.release, spec.component)
        if state.phase == phase or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


# --- rollout_status against Deployments the simulated helm rolls out ---------------------------------


def test_successful_upgrade_job_leaves_the_component_ready(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release)
    run_job(gateway, spec)
    state = gateway.rollout_status(spec.namespace, spec.release, "api")
    assert state == RolloutState("ready", "deployment stack-api: 2/2 ready", ("deployment/stack-api",))
    deployment = cluster.workload(spec.namespace, spec.release, "api")
    assert deployment is not None
    assert deployment["metadata"]["generation"] == 2  # add_release made generation 1
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2.0.0")


def test_add_release_creates_a_ready_deployment_per_component(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-seeded", "stack")
    for component in ("api", "dashboard", "exporter", "mosquitto"):
        state = gateway.rollout_status("customer-seeded", "stack", component)
        assert (state.phase, state.workloads) == ("ready", (f"deployment/stack-{component}",))


def test_upgrade_without_seeded_release_meets_an_installed_one(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec(component="exporter")  # auto_create_releases: revision 1 installed on first sight
    run_job(gateway, spec)
    assert gateway.rollout_status(spec.namespace, spec.release, "exporter").phase == "ready"
    assert [(rev, state) for rev, state, _ in cluster.release_history(spec.namespace, spec.release)] == [
        (1, "superseded"), (2, "deployed")
    ]  # fmt: skip
    exporter, api = (cluster.workload(spec.namespace, spec.release, c) for c in ("exporter", "api"))
    assert exporter is not None and api is not None
    assert (exporter["metadata"]["generation"], image_of(exporter)) == (2, "registry.example.com/exporter:v2.0.0")
    assert (api["metadata"]["generation"], image_of(api)) == (1, "registry.example.com/api:v1.1.0")  # chart default


def image_of(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def generation(cluster: SimulatedCluster, spec: HelmJobSpec) -> int:
    deployment = cluster.workload(spec.namespace, spec.release, spec.component) or {}
    return int((deployment.get("metadata") or {}).get("generation") or 0)


def start_waiting_upgrade(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, spec: HelmJobSpec, *, unhealthy: bool = True
) -> None:
    """An upgrade whose helm --wait keeps waiting (long timeout), started and applied."""
    cluster.add_release(spec.namespace, spec.release)
    if unhealthy:
        cluster.unhealthy_customers.add(spec.customer_id)
    cluster.wait_timeout_seconds = 60
    gateway.start_helm_job(spec)
    wait_until(lambda: generation(cluster, spec) == 2, what="helm applied the new Deployment")


def test_helm_wait_keeps_the_job_running_until_the_rollout_is_done(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.rollout_seconds = 60
    start_waiting_upgrade(cluster, gateway, spec, unhealthy=False)
    state = gateway.rollout_status(spec.namespace, spec.release, "api")
    assert state.phase == "progressing"
    assert state.detail == "deployment stack-api: 2/2 ready, 0/2 updated, observed generation 1 < 2"
    assert gateway.http_health(spec.namespace, "stack-api", "http", "/healthz").healthy  # old pods serve
    assert gateway.get_helm_job(spec).phase == "running"  # helm --wait is still waiting
    assert cluster.release_history(spec.namespace, spec.release)[-1][:2] == (2, "pending-upgrade")
    cluster.rollout_seconds = 0
    assert wait_finished(gateway, spec).phase == "succeeded"
    assert gateway.rollout_status(spec.namespace, spec.release, "api").phase == "ready"


@pytest.mark.parametrize("key", ["customer id", "namespace"])
def test_unhealthy_customer_fails_helm_wait_and_atomic_restores_the_old_version(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec, key: str
) -> None:
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release)
    cluster.unhealthy_customers.add(spec.customer_id if key == "customer id" else spec.namespace)
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "failed"
    assert (
        "Error: UPGRADE FAILED: release stack failed, and has been rolled back due to atomic being set: "
        "context deadline exceeded" in (state.error or "")
    )
    assert [(rev, status) for rev, status, _ in cluster.release_history(spec.namespace, spec.release)] == [
        (1, "superseded"), (2, "failed"), (3, "deployed")
    ]  # fmt: skip
    assert gateway.rollout_status(spec.namespace, spec.release, "api").phase == "ready"
    assert gateway.http_health(spec.namespace, "stack-api", "http", "/healthz").healthy
    deployment = cluster.workload(spec.namespace, spec.release, "api")
    assert deployment is not None
    assert deployment["metadata"]["generation"] == 3  # the new version, then the old one again
    assert image_of(deployment) == "registry.example.com/api:v1.1.0"


def test_while_helm_waits_an_unhealthy_rollout_reports_its_progress_deadline(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    start_waiting_upgrade(cluster, gateway, spec)  # helm keeps waiting while the rollout is looked at
    failed = wait_until(
        lambda: (s := gateway.rollout_status(spec.namespace, spec.release, "api")).phase == "failed" and s,
        what="the rollout to fail",
    )
    assert failed.detail.startswith("deployment stack-api: ProgressDeadlineExceeded: ")
    assert "(0/2 ready)" in failed.detail
    assert gateway.http_health(spec.namespace, "stack-api", "http", "/healthz").status == 503
    assert gateway.rollout_status(spec.namespace, spec.release, "dashboard").phase == "ready"  # untouched
    assert gateway.get_helm_job(spec).phase == "running"
    cluster.wait_timeout_seconds = 0  # helm's --timeout passes: --atomic restores the old version
    assert wait_finished(gateway, spec).phase == "failed"
    assert gateway.rollout_status(spec.namespace, spec.release, "api").phase == "ready"


def test_recover_job_brings_the_healthy_version_back_after_helm_was_killed(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    start_waiting_upgrade(cluster, gateway, spec)
    gateway.delete_helm_job(spec)  # the pod goes with the Job: helm dies while it waits
    wait_until(lambda: not cluster.pods(gateway.job_name(spec)), what="the Job's pod to be deleted")
    assert cluster.release_history(spec.namespace, spec.release)[-1][:2] == (2, "pending-upgrade")
    assert gateway.rollout_status(spec.namespace, spec.release, "api").phase == "failed"
    run_job(gateway, rollback_of(spec, "recover"))
    assert gateway.rollout_status(spec.namespace, spec.release, "api").phase == "ready"
    assert [(rev, status) for rev, status, _ in cluster.release_history(spec.namespace, spec.release)] == [
        (1, "superseded"), (2, "pending-upgrade"), (3, "deployed")
    ]  # fmt: skip  # helm rollback supersedes deployed revisions only


def test_unhealthy_rollout_is_progressing_before_its_deadline_and_without_one(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.stuck_rollout_fails = False
    start_waiting_upgrade(cluster, gateway, spec)
    state = gateway.rollout_status(spec.namespace, spec.release, "api")
    assert (state.phase, state.detail) == ("progressing", "deployment stack-api: 0/2 ready, 0/2 available")


def test_stuck_rollout_fails_only_after_rollout_seconds(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.rollout_seconds = 60
    start_waiting_upgrade(cluster, gateway, spec)
    assert gateway.rollout_status(spec.namespace, spec.release, "api").phase == "progressing"
    cluster.rollout_seconds = 0  # its progress deadline passes
    assert wait_rollout(gateway, spec, "failed").phase == "failed"


def test_set_workload_health_switches_rollout_and_probe(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-toggle", "stack")
    cluster.set_workload_health("customer-toggle", "stack", "mosquitto", False)
    assert gateway.rollout_status("customer-toggle", "stack", "mosquitto").phase == "failed"
    assert not gateway.http_health("customer-toggle", "stack-mosquitto", "1883", "/").healthy
    cluster.set_workload_health("customer-toggle", "stack", "mosquitto", True)
    assert gateway.rollout_status("customer-toggle", "stack", "mosquitto").phase == "ready"
    assert gateway.http_health("customer-toggle", "stack-mosquitto", "1883", "/").healthy


def test_no_matching_workload_is_failed_and_says_what_was_looked_for(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-other", "other")  # workloads of another release must not count
    state = gateway.rollout_status("customer-other", "stack", "api")
    assert state == RolloutState(
        "failed",
        "no Deployment or StatefulSet labelled app.kubernetes.io/instance=stack,"
        "app.kubernetes.io/component=api in namespace customer-other",
        (),
    )


def test_simulated_deployments_are_valid_for_the_official_models(
    cluster: SimulatedCluster, apps: kubernetes.client.AppsV1Api
) -> None:
    cluster.add_release("customer-typed", "stack")
    listed: Any = apps.list_namespaced_deployment("customer-typed")
    assert sorted(d.metadata.name for d in listed.items) == [
        "stack-api", "stack-dashboard", "stack-exporter", "stack-mosquitto"
    ]  # fmt: skip
    assert {d.status.ready_replicas for d in listed.items} == {2}


# --- StatefulSets (created through the API, as a chart would) -----------------------------------------


def statefulset(release: str, *, generation: int = 3, replicas: int = 3, **status: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": release, "app.kubernetes.io/component": "mosquitto"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": f"{release}-broker", "labels": labels, "generation": generation},
        "spec": {
            "replicas": replicas,
            "serviceName": f"{release}-broker",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "mosquitto", "image": "eclipse-mosquitto:2"}]},
            },
        },
        "status": {"replicas": replicas, **status},
    }


READY = {"observedGeneration": 3, "readyReplicas": 3, "updatedReplicas": 3, "currentReplicas": 3}


@pytest.mark.parametrize(
    ("status", "phase", "detail"),
    [
        ({**READY, "currentRevision": "b-7c9", "updateRevision": "b-7c9"}, "ready", "3/3 ready"),
        (READY, "ready", "3/3 ready"),  # revisions not reported: counts decide
        ({**READY, "currentRevision": "b-6f1", "updateRevision": "b-7c9"}, "progressing",
         "3/3 ready, revision b-6f1 -> b-7c9"),
        ({**READY, "observedGeneration": 2}, "progressing", "3/3 ready, observed generation 2 < 3"),
        ({**READY, "readyReplicas": 2}, "progressing", "2/3 ready"),
        ({**READY, "updatedReplicas": 1}, "progressing", "3/3 ready, 1/3 updated"),
    ],
)  # fmt: skip
def test_statefulset_readiness_rules(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, apps: kubernetes.client.AppsV1Api,
    status: dict[str, Any], phase: str, detail: str,
) -> None:  # fmt: skip
    cluster.onboard("customer-sts")
    apps.create_namespaced_stateful_set("customer-sts", body=statefulset("mq", **status))  # type: ignore[arg-type]
    state = gateway.rollout_status("customer-sts", "mq", "mosquitto")
    assert (state.phase, state.detail) == (phase, f"statefulset mq-broker: {detail}")
    assert state.workloads == ("statefulset/mq-broker",)


def test_one_unready_workload_keeps_the_component_progressing(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, apps: kubernetes.client.AppsV1Api
) -> None:
    cluster.add_release("customer-mixed", "mq")
    unready = statefulset("mq", **{**READY, "readyReplicas": 1})
    apps.create_namespaced_stateful_set("customer-mixed", body=unready)  # type: ignore[arg-type]
    state = gateway.rollout_status("customer-mixed", "mq", "mosquitto")
    assert state.phase == "progressing"
    assert state.detail == "statefulset mq-broker: 1/3 ready"  # only what is not ready yet
    assert state.workloads == ("deployment/mq-mosquitto", "statefulset/mq-broker")


# --- Deployment rules that the simulator does not produce (pure) -------------------------------------


def deployment(generation: int, observed: int, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "api", "generation": generation},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": observed, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
                   "availableReplicas": 3, **status},
    }  # fmt: skip


DEADLINE = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}]


def test_deadline_of_a_previous_generation_is_not_a_failure_of_this_one() -> None:
    phase, detail = deployment_verdict(deployment(5, 4, readyReplicas=1, conditions=DEADLINE))
    assert (phase, detail) == ("progressing", "deployment api: 1/3 ready, observed generation 4 < 5")
    assert deployment_verdict(deployment(5, 5, conditions=DEADLINE))[0] == "failed"


def test_old_replicas_still_terminating_are_not_ready() -> None:
    assert deployment_verdict(deployment(2, 2, replicas=4)) == (
        "progressing", "deployment api: 3/3 ready, 1 old replicas terminating"
    )  # fmt: skip


# --- http_health through the service proxy ------------------------------------------------------------


def test_http_health_of_a_healthy_service(cluster: SimulatedCluster, gateway: KubernetesClusterGateway) -> None:
    cluster.add_release("customer-web", "stack")
    probe = gateway.http_health("customer-web", "stack-dashboard", "http", "/healthz/ready")
    assert (probe.healthy, probe.status) == (True, 200)
    assert probe.detail == "GET customer-web/stack-dashboard:http/healthz/ready: HTTP 200: ok"


def test_http_health_of_an_unhealthy_service_is_503_not_an_error(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-web", "stack")
    cluster.set_workload_health("customer-web", "stack", "api", False)
    probe = gateway.http_health("customer-web", "stack-api", "8080", "healthz")
    assert (probe.healthy, probe.status) == (False, 503)
    assert probe.detail == (
        'GET customer-web/stack-api:8080/healthz: HTTP 503: no endpoints available for service "stack-api"'
    )


def test_http_health_of_a_missing_service_is_unhealthy(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.onboard("customer-empty")  # an onboarded customer namespace, no such service
    probe = gateway.http_health("customer-empty", "stack-api", "http", "/healthz")
    assert (probe.healthy, probe.status) == (False, 404)
    assert 'services "stack-api" not found' in probe.detail


@pytest.mark.parametrize(
    ("service", "port", "path"),
    [
        ("../secrets", "http", "/healthz"),
        ("stack-api/proxy", "http", "/healthz"),
        ("Stack-API", "http", "/healthz"),
        ("stack-api:9090", "http", "/healthz"),
        ("x" * 64, "http", "/healthz"),
        ("stack-api", "http/../x", "/healthz"),
        ("stack-api", "0", "/healthz"),
        ("stack-api", "70000", "/healthz"),
        ("stack-api", "-http", "/healthz"),
        ("stack-api\n", "http", "/healthz"),  # `$` alone would let a trailing newline through
        ("stack-api", "http\n", "/healthz"),
    ]
    + [
        ("stack-api", "http", path)
        for path in ("/../../api/v1/secrets", "/a/../b", "/./healthz", "/healthz?x=1", "/healthz#x",
                     "/%2e%2e/x", "/a;b", "/a b", "/a\nb", "/healthz\n", "/" + "a" * 256)
    ],
)  # fmt: skip
def test_hostile_probe_targets_are_rejected_before_any_request(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, service: str, port: str, path: str
) -> None:
    cluster.add_release("customer-web", "stack")
    cluster.fail_next(1, status=500, path_contains="/proxy")  # consumed by the first proxied request
    with pytest.raises(ClusterPermanentError, match="invalid http health check"):
        gateway.http_health("customer-web", service, port, path)
    assert gateway.http_health("customer-web", "stack-api", "http", "/healthz").status == 500  # fault unused


@pytest.mark.parametrize(
    ("namespace", "release", "component"),
    [("customer-1", "stack,app=x", "api"), ("customer-1\n", "stack", "api"), ("customer-1", "stack", "api,x!=y")],
)
def test_invalid_rollout_target_is_rejected(
    gateway: KubernetesClusterGateway, namespace: str, release: str, component: str
) -> None:
    with pytest.raises(ClusterPermanentError, match="invalid rollout check"):
        gateway.rollout_status(namespace, release, component)


def test_invalid_probe_namespace_is_rejected(gateway: KubernetesClusterGateway) -> None:
    with pytest.raises(ClusterPermanentError, match="invalid namespace"):
        gateway.http_health("customer-1/services/x", "stack-api", "http", "/healthz")


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "path"), [(500, "/deployments"), (503, "/statefulsets"), (429, "/deployments")])
def test_api_errors_while_listing_workloads_are_transient(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, status: int, path: str
) -> None:
    cluster.add_release("customer-flaky", "stack")
    cluster.fail_next(1, status=status, path_contains=path)
    with pytest.raises(ClusterTransientError, match=f"HTTP {status}"):
        gateway.rollout_status("customer-flaky", "stack", "api")
    assert gateway.rollout_status("customer-flaky", "stack", "api").phase == "ready"


def test_api_server_throttling_a_probe_is_transient(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    cluster.add_release("customer-flaky", "stack")
    cluster.fail_next(1, status=429, path_contains="/proxy")
    with pytest.raises(ClusterTransientError, match="HTTP 429"):
        gateway.http_health("customer-flaky", "stack-api", "http", "/healthz")


def test_a_5xx_on_the_probe_counts_as_unhealthy_not_transient(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    # The API server's own 5xx and the service's 5xx look alike through the proxy.
    cluster.add_release("customer-flaky", "stack")
    cluster.fail_next(1, status=500, path_contains="/proxy")
    probe = gateway.http_health("customer-flaky", "stack-api", "http", "/healthz")
    assert (probe.healthy, probe.status) == (False, 500)
    assert probe.detail.endswith(
        "simulated fault on /api/v1/namespaces/customer-flaky/services/stack-api:http/proxy/healthz"
    )


def test_forbidden_by_the_api_server_is_permanent(cluster: SimulatedCluster, gateway: KubernetesClusterGateway) -> None:
    cluster.add_release("customer-rbac", "stack", onboard=False)  # no RoleBinding: services/proxy not granted
    with pytest.raises(ClusterPermanentError, match="HTTP 403"):
        gateway.http_health("customer-rbac", "stack-api", "http", "/healthz")


def test_connection_errors_are_transient(make_spec: MakeSpec) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    configuration = kubernetes.client.Configuration(host=url)
    configuration.retries = 0
    with kubernetes.client.ApiClient(configuration) as api_client:
        gateway = KubernetesClusterGateway(api_client, ClusterConfig(mode="url", api_url=url))
        with pytest.raises(ClusterTransientError):
            gateway.rollout_status("customer-1", "stack", "api")
        with pytest.raises(ClusterTransientError):
            gateway.http_health("customer-1", "stack-api", "http", "/healthz")
