"""A SIMULATED Kubernetes cluster for tests and the local stack (not deployed).

The implementation lives in the `upgradectl.local.simcluster` package (API server, Job controller,
Helm 3, workloads); this module keeps the historical import path working:

    from upgradectl.local.cluster import SimulatedCluster
"""

from upgradectl.local.simcluster import (
    ChartCatalog,
    ChartVersion,
    CreatedJob,
    ProtobufWrite,
    SimulatedCluster,
    default_charts,
    flatten_values,
    write_chart_dir,
)
from upgradectl.local.simcluster.charts import COMPONENTS
from upgradectl.local.simcluster.workloads import REPLICAS as WORKLOAD_REPLICAS

__all__ = [
    "COMPONENTS",
    "WORKLOAD_REPLICAS",
    "ChartCatalog",
    "ChartVersion",
    "CreatedJob",
    "ProtobufWrite",
    "SimulatedCluster",
    "default_charts",
    "flatten_values",
    "write_chart_dir",
]
