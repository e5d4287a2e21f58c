"""The simulated Kubernetes cluster (kmock API server, Job controller, Helm 3) for tests and the local stack."""

from upgradectl.local.simcluster.charts import ChartCatalog, ChartVersion, default_charts, write_chart_dir
from upgradectl.local.simcluster.cluster import CreatedJob, SimulatedCluster, flatten_values
from upgradectl.local.simcluster.server import ProtobufWrite

__all__ = [
    "ChartCatalog",
    "ChartVersion",
    "CreatedJob",
    "ProtobufWrite",
    "SimulatedCluster",
    "default_charts",
    "flatten_values",
    "write_chart_dir",
]
