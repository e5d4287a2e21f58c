"""The local stack every rollout benchmark runs on: a temporary database on the machine's PostgreSQL, the
SimulatedCluster over HTTP (RBAC enforced, the Lambda identity's token from a file) and the real ASL on
moto's executing Step Functions with the real handlers (`LocalRuntime`), like tests/e2e; and its fleet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from upgrader import factory

from tests.support.database import temporary_database
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.runtime import LocalRuntime


@dataclass
class Stack:
    url: str
    cluster: SimulatedCluster
    runtime: LocalRuntime


@contextmanager
def local_stack(*, job_seconds: float = 0.05, poll_seconds: int = 0, extra_env: dict[str, str] | None = None,
                database: str = "upgrades_bench") -> Iterator[Stack]:  # fmt: skip
    with temporary_database(database) as url, SimulatedCluster(job_duration_seconds=job_seconds) as cluster, \
            LocalRuntime(database_url=url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file), kube_reader_token_file=str(cluster.reader_token_file),
                         poll_seconds=poll_seconds, extra_env=extra_env or {}) as runtime:  # fmt: skip
        yield Stack(url, cluster, runtime)


def seed_customers(cluster: SimulatedCluster, customers: int) -> None:
    """customer-00001 ... with api v1.1.0, in the inventory and as a Helm release in the cluster."""
    repo = factory.repository()
    for i in range(1, customers + 1):
        name = f"customer-{i:05d}"
        repo.upsert_customer(f"cust_{i:05d}", name, name, versions={"api": "v1.1.0"})
        cluster.add_release(name, name, values={"api.image.tag": "v1.1.0"})
