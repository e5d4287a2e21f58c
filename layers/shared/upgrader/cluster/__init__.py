"""Cluster access: run helm as Kubernetes Jobs and read Helm release state.

Importing this package stays cheap: only `types` is re-exported here. The adapter modules
(`upgrader.cluster.jobs`, `upgrader.cluster.access`) import the kubernetes client (~2.4 s) and belong
to the functions that carry the kubernetes layer.
"""

from upgrader.cluster.types import (
    ClusterConfig,
    ClusterGateway,
    ClusterPermanentError,
    ClusterTransientError,
    HelmJobSpec,
    JobNotFoundError,
    JobState,
    ReleaseInfo,
)

__all__ = [
    "ClusterConfig",
    "ClusterGateway",
    "ClusterPermanentError",
    "ClusterTransientError",
    "HelmJobSpec",
    "JobNotFoundError",
    "JobState",
    "ReleaseInfo",
]
