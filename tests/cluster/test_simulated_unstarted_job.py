"""The simulated Job controller can leave a Job unstarted (no status.startTime, no pod), as a real
cluster does while kube-controller-manager is down or behind: what the reconciler must not take for an
ended Job."""

from __future__ import annotations

from collections.abc import Callable

from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import HelmJobSpec

from tests.cluster.conftest import wait_finished
from upgradectl.local.cluster import SimulatedCluster

MakeSpec = Callable[..., HelmJobSpec]
CUSTOMER = "upgrades.example.com/customer-id"


def test_a_job_the_controller_has_not_started_has_no_start_time_and_no_pod(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    """Breakage tried: the rule ignored in `JobController.reconcile` (every new Job begun at once): the Job
    got a startTime and a pod, and this test failed."""
    held, other = make_spec(), make_spec()
    cluster.unstarted_when = lambda manifest: manifest["metadata"]["labels"].get(CUSTOMER) == held.customer_id
    name = gateway.start_helm_job(held)
    gateway.start_helm_job(other)
    # the other Job is begun and ends, so the controller has had its ticks since both were created
    assert wait_finished(gateway, other).phase == "succeeded"
    job = cluster.jobs()[name]
    assert not job.get("status"), job.get("status")  # no startTime, no active count, no condition
    assert cluster.pods(name) == {}
    assert gateway.get_helm_job(held).phase == "pending"
    assert gateway.active_jobs_for_release(held.namespace, held.release) == [name]
    assert cluster.running_jobs() == 0  # not running: never begun

    # When the controller picks it up, it starts and runs as any other Job
    cluster.unstarted_when = None
    assert wait_finished(gateway, held).phase == "succeeded"
    assert cluster.jobs()[name]["status"]["startTime"]


def test_an_unstarted_job_can_be_deleted_and_never_starts(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway, make_spec: MakeSpec
) -> None:
    spec, witness = make_spec(), make_spec()
    cluster.unstarted_when = lambda manifest: manifest["metadata"]["labels"].get(CUSTOMER) == spec.customer_id
    name = gateway.start_helm_job(spec)
    gateway.delete_helm_job(spec)
    cluster.unstarted_when = None
    # a Job created after it is begun and ends: the controller has had its ticks, and the deleted Job none
    gateway.start_helm_job(witness)
    assert wait_finished(gateway, witness).phase == "succeeded"
    assert name not in cluster.jobs() and cluster.pods(name) == {}
    assert gateway.get_helm_job(spec).phase == "missing"
