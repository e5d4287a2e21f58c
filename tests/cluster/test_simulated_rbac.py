# mypy: disable-error-code="arg-type,union-attr,operator,func-returns-value"
# (raw dict bodies and the client's Optional model fields, as a test of the API server reads them)
"""RBAC in the simulated cluster: k8s/rbac decides what the product's two identities (jobs: start, check,
reconcile; reader: sync, rollout checks) and helm's service account may do, so a verb missing from the
manifests fails the product call that needs it, and the reader can create no Job."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import ClusterConfig, ClusterPermanentError, HelmJobSpec

from tests.cluster.conftest import jobs_configuration, wait_finished
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.simcluster.rbac import RBAC_DIR

MakeSpec = Callable[..., HelmJobSpec]
JOBS = "customer-upgrades-jobs:simulated"
READER = "customer-upgrades-reader:simulated"
RUNNER = "system:serviceaccount:upgrade-system:upgrade-runner"


@pytest.fixture
def reader_core(cluster: SimulatedCluster) -> Iterator[kubernetes.client.CoreV1Api]:
    with kubernetes.client.ApiClient(jobs_configuration(cluster, reader=True)) as api_client:
        yield kubernetes.client.CoreV1Api(api_client)


def forbidden_body(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403
    body: dict[str, Any] = json.loads(caught.value.body)
    return body


# --- the authorizer ------------------------------------------------------------------------------------


def test_a_verb_the_jobs_identity_lacks_is_the_api_servers_403(cluster: SimulatedCluster) -> None:
    cluster.onboard("customer-y")
    with kubernetes.client.ApiClient(jobs_configuration(cluster)) as api_client:
        batch = kubernetes.client.BatchV1Api(api_client)
        job = {"metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
        body = forbidden_body(lambda: batch.create_namespaced_job("customer-y", job))  # Jobs only in upgrade-system
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": f'jobs.batch is forbidden: User "{JOBS}" cannot create resource "jobs" in API group "batch" '
                   'in the namespace "customer-y"',
        "details": {"group": "batch", "kind": "jobs"},
    }  # fmt: skip


def test_named_and_subresource_requests_are_authorized_as_such(
    cluster: SimulatedCluster, reader_core: kubernetes.client.CoreV1Api
) -> None:
    cluster.add_release("customer-n", "stack")
    # get/list Secrets only: no write, and no pods/log there
    body = forbidden_body(lambda: reader_core.delete_namespaced_secret("sh.helm.release.v1.stack.v1", "customer-n"))
    assert body["message"] == (
        f'secrets "sh.helm.release.v1.stack.v1" is forbidden: User "{READER}" cannot delete resource "secrets" '
        'in API group "" in the namespace "customer-n"'
    )
    body = forbidden_body(lambda: reader_core.read_namespaced_pod_log("p", "customer-n"))
    assert 'cannot get resource "pods/log" in API group ""' in body["message"]
    assert reader_core.read_namespaced_secret("sh.helm.release.v1.stack.v1", "customer-n").metadata.name
    # listing namespaces is the one cluster-wide grant (discovery); deleting one is not
    assert reader_core.list_namespace().items
    body = forbidden_body(lambda: reader_core.delete_namespace("customer-n"))
    # (as the real API server says it: a namespace's own name is the request's namespace)
    assert body["message"].endswith('cannot delete resource "namespaces" in API group "" in the namespace "customer-n"')


def test_no_token_or_an_unknown_one_is_cluster_admin(cluster: SimulatedCluster) -> None:
    for token in (None, "x"):
        configuration = kubernetes.client.Configuration(host=cluster.url)
        if token:
            configuration.api_key = {"authorization": f"Bearer {token}"}
        with kubernetes.client.ApiClient(configuration) as api_client:
            core = kubernetes.client.CoreV1Api(api_client)
            core.create_namespaced_secret("anywhere", {"metadata": {"name": f"s-{token}"}})
            assert names_of(core.list_namespace())
    assert cluster.can(None, "delete", "secrets", "anywhere") and cluster.can("x", "create", "namespaces")
    assert not cluster.can(cluster.jobs_token, "create", "secrets", "anywhere")


def names_of(listing: Any) -> list[str]:
    return [item.metadata.name for item in listing.items]


def test_bindings_changed_through_the_api_change_what_is_allowed(cluster: SimulatedCluster) -> None:
    cluster.onboard("customer-b")
    assert cluster.can(cluster.reader_token, "list", "secrets", "customer-b")
    assert cluster.can(cluster.runner_token, "patch", "deployments", "customer-b", group="apps")
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:  # admin
        rbac = kubernetes.client.RbacAuthorizationV1Api(api_client)
        rbac.delete_namespaced_role_binding("customer-upgrades-release-reader", "customer-b")
        rbac.patch_cluster_role("customer-upgrades-helm-runner", {"rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]})  # fmt: skip
    assert not cluster.can(cluster.reader_token, "list", "secrets", "customer-b")
    assert not cluster.can(cluster.runner_token, "patch", "deployments", "customer-b", group="apps")
    assert cluster.can(cluster.runner_token, "list", "secrets", "customer-b")
    # a group bound cluster-wide gets its rights everywhere; resourceNames narrow them to one object
    token = cluster.token_for("auditor", ["auditors"])
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        rbac = kubernetes.client.RbacAuthorizationV1Api(api_client)
        rbac.create_cluster_role({"metadata": {"name": "read-one"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["visible"]},
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]}]})  # fmt: skip
        rbac.create_cluster_role_binding({"metadata": {"name": "read-one"}, "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "read-one"},
            "subjects": [{"kind": "Group", "name": "auditors"}]})  # fmt: skip
    assert cluster.can(token, "get", "secrets", "any-ns", name="visible")
    assert not cluster.can(token, "get", "secrets", "any-ns", name="hidden")
    assert not cluster.can(token, "list", "secrets", "any-ns")  # resourceNames never allow a list
    assert cluster.can(token, "get", "jobs", "upgrade-system", group="batch", subresource="status")
    assert not cluster.can(token, "get", "jobs", "upgrade-system", group="batch")


# --- everything the product does is allowed by k8s/rbac as it is --------------------------------------


def test_every_call_of_the_product_is_allowed_for_the_identity_that_makes_it(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, reader_gateway: KubernetesClusterGateway,
    make_spec: MakeSpec,
) -> None:  # fmt: skip
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release)
    # the jobs identity (start_helm_job, check_helm_job, reconcile_runs)
    assert gateway.release_status(spec.namespace, spec.release).status == "deployed"
    assert gateway.start_helm_job(spec) == gateway.job_name(spec)
    assert gateway.start_helm_job(spec) == gateway.job_name(spec)  # the 409 adopts it
    state = wait_finished(gateway, spec)
    assert state.phase == "succeeded" and "has been upgraded" in state.output  # Job, pods and the pod log read
    assert gateway.active_jobs_for_release(spec.namespace, spec.release) == []
    assert gateway.helm_jobs_of(spec.log_id) == {gateway.job_name(spec): True}
    # the reader identity (check_rollout; the sync's reads are in tests/cluster/test_discovery_reader.py)
    assert reader_gateway.release_status(spec.namespace, spec.release).status == "deployed"
    assert reader_gateway.rollout_status(spec.namespace, spec.release, spec.component).phase == "ready"
    assert reader_gateway.http_health(spec.namespace, f"{spec.release}-{spec.component}", "http", "/healthz").healthy
    gateway.delete_helm_job(spec)
    assert gateway.get_helm_job(spec).phase == "missing"
    statuses = [(r.user, r.status) for r in cluster.job_create_requests]
    assert statuses == [(JOBS, 201), (JOBS, 409)]


def test_the_reader_identity_can_create_no_job_nor_read_helm_output(
    cluster: SimulatedCluster, reader_gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    """Issue 29 item 6: sync_customers parses untrusted release data; as the one Lambda identity it could
    create Jobs that run as upgrade-runner, with the runner's write access to every customer namespace.

    Breakage tried: 10-lambda-job-namespace.yaml binding the reader group too (as the single Lambda group
    was): the create is admitted and this test fails."""
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release)
    with pytest.raises(ClusterPermanentError, match="HTTP 403") as caught:
        reader_gateway.start_helm_job(spec)
    message = json.loads(caught.value.__cause__.body)["message"]  # type: ignore[union-attr]
    assert message == (f'jobs.batch is forbidden: User "{READER}" cannot create resource "jobs" in API group "batch" '
                       'in the namespace "upgrade-system"')  # fmt: skip
    assert cluster.job_create_requests[-1].user == READER and cluster.job_create_requests[-1].status == 403
    assert not cluster.can(cluster.reader_token, "get", "pods", "upgrade-system", subresource="log")
    assert not cluster.can(cluster.reader_token, "delete", "jobs", "upgrade-system", group="batch")
    assert not cluster.can(cluster.reader_token, "create", "pods", "upgrade-system")


def test_the_jobs_identity_reads_release_state_only_and_lists_no_namespaces(cluster: SimulatedCluster) -> None:
    """Breakage tried: 31-customer-namespace-bindings.yaml binding the release reader to the jobs group:
    the workload reads and the service proxy are allowed and this test fails."""
    cluster.onboard("customer-j")
    assert cluster.can(cluster.jobs_token, "list", "secrets", "customer-j")
    assert not cluster.can(cluster.jobs_token, "list", "deployments", "customer-j", group="apps")
    assert not cluster.can(cluster.jobs_token, "get", "services", "customer-j", subresource="proxy")
    assert not cluster.can(cluster.jobs_token, "list", "namespaces")
    assert cluster.can(cluster.reader_token, "list", "namespaces")
    assert not cluster.can(cluster.jobs_token, "create", "jobs", "customer-j", group="batch")


# --- a verb removed from k8s/rbac fails the product call that needs it --------------------------------


def rbac_copy_without(tmp_path: Path, file: str, resource: str, verb: str) -> Path:
    """k8s/rbac copied, with `verb` removed from the rules of `file` that grant it on `resource`."""
    target = tmp_path / "rbac"
    shutil.copytree(RBAC_DIR, target)
    path = target / file
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    removed = 0
    for document in documents:
        for rule in document.get("rules") or []:
            if resource in rule["resources"] and verb in rule["verbs"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != verb]
                removed += 1
    assert removed, f"{file} grants no {verb} on {resource}: the mutation would prove nothing"
    path.write_text(yaml.safe_dump_all(documents))
    return target


@pytest.fixture
def mutated(tmp_path: Path, make_spec: MakeSpec) -> Iterator[Callable[..., tuple[SimulatedCluster, Any, Any]]]:
    clusters: list[SimulatedCluster] = []

    def start(file: str, resource: str, verb: str, *, reader: bool = False) -> tuple[
        SimulatedCluster, KubernetesClusterGateway, HelmJobSpec
    ]:  # fmt: skip
        cluster = SimulatedCluster(job_duration_seconds=0.01, poll_interval=0.005,
                                   rbac_dir=rbac_copy_without(tmp_path, file, resource, verb)).start()  # fmt: skip
        clusters.append(cluster)
        token_file = cluster.reader_token_file if reader else cluster.jobs_token_file
        config = ClusterConfig(mode="url", api_url=cluster.url, token_file=str(token_file))
        configuration = jobs_configuration(cluster, reader=reader)
        configuration.retries = 0
        gateway = KubernetesClusterGateway(kubernetes.client.ApiClient(configuration), config)
        spec = make_spec()
        cluster.add_release(spec.namespace, spec.release)
        return cluster, gateway, spec

    yield start
    for cluster in clusters:
        cluster.stop()


def finished_job(gateway: KubernetesClusterGateway, spec: HelmJobSpec) -> None:
    gateway.start_helm_job(spec)
    assert wait_finished(gateway, spec).phase == "succeeded"


# (file, resource, verb, the identity making the call: reader?, the call)
PRODUCT_CALLS: list[tuple[str, str, str, bool, Callable[[KubernetesClusterGateway, HelmJobSpec], Any]]] = [
    ("10-lambda-job-namespace.yaml", "jobs", "create", False, lambda g, s: g.start_helm_job(s)),
    ("10-lambda-job-namespace.yaml", "jobs", "get", False, lambda g, s: g.get_helm_job(s)),
    ("10-lambda-job-namespace.yaml", "jobs", "list", False, lambda g, s: g.active_jobs_for_release(s.namespace, s.release)),
    ("10-lambda-job-namespace.yaml", "jobs", "delete", False, lambda g, s: g.delete_helm_job(s)),
    ("10-lambda-job-namespace.yaml", "pods", "list", False, lambda g, s: (finished_job(g, s), g.get_helm_job(s))),
    ("10-lambda-job-namespace.yaml", "pods/log", "get", False, lambda g, s: (finished_job(g, s), g.get_helm_job(s))),
    ("20-lambda-release-reader.yaml", "secrets", "list", False, lambda g, s: g.release_status(s.namespace, s.release)),
    ("20-lambda-release-reader.yaml", "secrets", "list", True, lambda g, s: g.release_status(s.namespace, s.release)),
    ("20-lambda-release-reader.yaml", "deployments", "list", True,
     lambda g, s: g.rollout_status(s.namespace, s.release, s.component)),
    ("20-lambda-release-reader.yaml", "services/proxy", "get", True,
     lambda g, s: g.http_health(s.namespace, f"{s.release}-{s.component}", "http", "/healthz")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("file", "resource", "verb", "reader", "call"), PRODUCT_CALLS,
    ids=[f"{'reader' if c[3] else 'jobs'}-{c[2]}-{c[1]}" for c in PRODUCT_CALLS],
)  # fmt: skip
def test_a_verb_removed_from_an_identitys_rbac_fails_the_call_that_needs_it(
    mutated: Callable[..., tuple[SimulatedCluster, KubernetesClusterGateway, HelmJobSpec]], file: str, resource: str,
    verb: str, reader: bool, call: Callable[[KubernetesClusterGateway, HelmJobSpec], Any],
) -> None:  # fmt: skip
    _, gateway, spec = mutated(file, resource, verb, reader=reader)
    with pytest.raises(ClusterPermanentError, match="HTTP 403") as caught:
        call(gateway, spec)
    cause = caught.value.__cause__
    assert isinstance(cause, ApiException)
    user = READER if reader else JOBS
    assert f'User "{user}" cannot {verb} resource "{resource}"' in json.loads(cause.body)["message"]


RUNNER_ERRORS = [
    ("secrets", "list", 'Error: UPGRADE FAILED: query: failed to query with labels: secrets is forbidden: User '
                        f'"{RUNNER}" cannot list resource "secrets"'),
    ("secrets", "create", f'Error: UPGRADE FAILED: create: failed to create: secrets is forbidden: User "{RUNNER}" '
                          'cannot create resource "secrets"'),
    ("deployments", "patch", 'cannot patch "stack-api" with kind Deployment: deployments.apps "stack-api" is '
                             f'forbidden: User "{RUNNER}" cannot patch resource "deployments" in API group "apps"'),
    ("services", "get", 'could not get information about the resource: services "stack-api" is forbidden'),
    ("replicasets", "list", f'replicasets.apps is forbidden: User "{RUNNER}" cannot list resource "replicasets"'),
    ("secrets", "update", 'update: failed to update: secrets "sh.helm.release.v1.stack.v2" is forbidden'),
]  # fmt: skip


@pytest.mark.parametrize(("resource", "verb", "error"), RUNNER_ERRORS, ids=[f"{v}-{r}" for r, v, _ in RUNNER_ERRORS])
def test_a_verb_removed_from_the_runners_rbac_fails_helm_as_helm_reports_it(
    mutated: Callable[..., tuple[SimulatedCluster, KubernetesClusterGateway, HelmJobSpec]], resource: str, verb: str,
    error: str,
) -> None:  # fmt: skip
    _, gateway, spec = mutated("30-helm-runner.yaml", resource, verb)
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "failed"
    assert error in state.output, state.output


def test_a_namespace_never_onboarded_is_closed_to_both_identities(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release, onboard=False)  # the release is there, the bindings are not
    with pytest.raises(ClusterPermanentError, match="HTTP 403"):
        gateway.release_status(spec.namespace, spec.release)
    gateway.start_helm_job(spec)
    state = wait_finished(gateway, spec)
    assert state.phase == "failed" and f'"{RUNNER}" cannot list resource "secrets"' in state.output
    cluster.onboard(spec.namespace)  # onboarding applies the template: both work
    assert gateway.release_status(spec.namespace, spec.release).status == "deployed"


def test_helm_runs_as_the_service_account_its_job_names(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec = make_spec()
    cluster.add_release(spec.namespace, spec.release)
    manifest = gateway.build_job_manifest(spec)
    manifest["spec"]["template"]["spec"]["serviceAccountName"] = "default"
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        kubernetes.client.BatchV1Api(api_client).create_namespaced_job("upgrade-system", manifest)
    state = wait_finished(gateway, spec)
    assert state.phase == "failed"
    assert 'User "system:serviceaccount:upgrade-system:default" cannot list resource "secrets"' in state.output
