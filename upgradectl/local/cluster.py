"""A SIMULATED Kubernetes cluster for tests and the local stack (not deployed).

The implementation is the `upgradectl.local.simcluster` package (API server, Job controller, Helm 3,
workloads); this module keeps the historical import path working:

    from upgradectl.local.cluster import SimulatedCluster
"""

from upgradectl.local.simcluster.cluster import CreatedJob, SimulatedCluster, flatten_values

__all__ = ["CreatedJob", "SimulatedCluster", "flatten_values"]
