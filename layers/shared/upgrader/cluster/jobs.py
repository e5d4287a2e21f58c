"""Kubernetes adapter of the cluster port: Helm runs as a Job, Helm's state is read from its Secrets.

Every call is safe to repeat (Step Functions may run a Task twice): the Job name is deterministic, a
second create answers 409 and the existing Job is adopted.
"""

from __future__ import annotations

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from upgrader.cluster.job_reading import JobReading
from upgrader.cluster.job_spec import JobManifests, helm_job_name
from upgrader.cluster.kube_calls import translated_errors
from upgrader.cluster.release_reading import ReleaseReading
from upgrader.cluster.types import ClusterConfig, HelmJobSpec


class KubernetesClusterGateway(JobManifests, JobReading, ReleaseReading):
    """Runs helm as Kubernetes Jobs and reads Helm release state, with the official client: the Job
    manifest (`job_spec`), reading Jobs back (`job_reading`) and releases and workloads (`release_reading`)."""

    def __init__(self, api_client: k8s.ApiClient, config: ClusterConfig) -> None:
        self._config = config
        self._batch = k8s.BatchV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)

    @property
    def config(self) -> ClusterConfig:
        return self._config

    def job_name(self, spec: HelmJobSpec) -> str:
        return helm_job_name(spec)

    def start_helm_job(self, spec: HelmJobSpec) -> str:
        """Create the Job; when it already exists (a retried Task) adopt it. Returns the Job name."""
        manifest = self.build_job_manifest(spec)
        name = manifest["metadata"]["name"]
        with translated_errors(f"create job {name}"):
            try:
                # The client serialises a plain dict as is: the manifest we test is the manifest we send.
                self._batch.create_namespaced_job(
                    namespace=self._config.job_namespace,
                    body=manifest,  # type: ignore[arg-type]
                )
            except ApiException as exc:
                if exc.status != 409:  # 409: our earlier attempt created it; adopt it
                    raise
        return name
