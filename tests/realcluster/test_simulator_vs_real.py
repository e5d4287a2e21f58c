"""The simulator measured against the real thing: the same scenarios, driven the same way over the
product's HTTP API, once on the simulated cluster and once on the real control plane with the real helm;
then what the two clusters hold is compared (per release: each revision's number, status, chart and
user-supplied values, read with the real helm from both; the helm Jobs: name and outcome), and what the
product reports (status counts, each log row's customer, operation, status and revisions).

Differences that remain are listed in docs/contracts.md ("The simulator against a real cluster")."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.realcluster.conftest import HELM_TIMEOUT_SECONDS, Stack, add_customers, open_stack
from tests.support.database import truncate_all
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.realcluster.cluster import RealCluster
from upgradectl.local.realcluster.helm import Helm, helm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TARGET_NAMESPACE_LABEL = "upgrades.example.com/target-namespace"


class SimulatedSide:
    """The simulated cluster with the interface the scenarios use; read with the real helm 3."""

    def __init__(self, cluster: SimulatedCluster, binary: Helm, home: Path) -> None:
        self.sim = cluster
        self.binary = binary
        self.home = home
        self.url = cluster.url
        self.jobs_token_file = cluster.jobs_token_file
        self.reader_token_file = cluster.reader_token_file

    def add_releases(self, releases: list[tuple[str, str, dict[str, str], str | None, str | None]]) -> None:
        for namespace, release, values, version, chart_name in releases:
            self.sim.add_release(namespace, release, values=values, chart_version=version, chart_name=chart_name)

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        # no token or an unknown one is the simulated cluster's admin (operators' helm)
        result = subprocess.run([str(self.binary.path), "--kube-apiserver", self.url, "--kube-token", "admin", *args],  # noqa: S603
                                capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(self.home)},
                                timeout=120, check=False)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {result.stderr[-400:]}")
        return result

    def request(self, method: str, path: str) -> Any:
        return requests.request(method, self.url + path, timeout=15).json()


@contextlib.contextmanager
def simulated_side(never_ready: set[str]) -> Iterator[SimulatedSide]:
    with tempfile.TemporaryDirectory() as home, SimulatedCluster(job_duration_seconds=0.05,
                                                                 unhealthy_customers=never_ready) as sim:  # fmt: skip
        yield SimulatedSide(sim, helm("3"), Path(home))


def snapshot(stack: Stack, upgrade_ids: list[str], namespaces: list[str]) -> dict[str, Any]:
    """What the cluster holds and what the product reports, in comparable terms."""
    releases = {}
    for ns in namespaces:
        history = json.loads(stack.cluster.helm("history", ns, "--namespace", ns, "--output", "json").stdout)
        releases[ns] = [
            (h["revision"], h["status"], h["chart"],
             json.loads(stack.cluster.helm("get", "values", ns, "--namespace", ns, "--revision", str(h["revision"]),
                                           "--output", "json").stdout) or {})
            for h in history
        ]  # fmt: skip
    jobs = []
    for job in stack.cluster.request("GET", "/apis/batch/v1/namespaces/upgrade-system/jobs")["items"]:
        if job["metadata"].get("labels", {}).get(TARGET_NAMESPACE_LABEL) not in namespaces:
            continue
        conditions = {c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c["status"] == "True"}
        jobs.append((job["metadata"]["name"], "Complete" if "Complete" in conditions else
                     "Failed" if "Failed" in conditions else "running"))  # fmt: skip
    product = []
    for uid in upgrade_ids:
        status = stack.status(uid)
        rows = sorted((r["namespace"], r["operation"], r["status"], r.get("revision_before"), r.get("revision_after"))
                      for r in stack.logs(uid))  # fmt: skip
        product.append(((status["status"], status["completed"], status["failed"]), rows))
    return {"releases": releases, "jobs": sorted(jobs), "product": product}


def done(status: dict[str, Any]) -> bool:
    return status["status"] in ("completed", "halted", "failed", "aborted", "completed_with_failures")


def canary_with_continue(stack: Stack, fleet: list[tuple[str, str]]) -> list[str]:
    uid = stack.deploy(component="api", version="v1.2.0", strategy="canary", canaryPercent=10,
                       customerIds=[c for c, _ in fleet])  # fmt: skip
    stack.wait_status(uid, lambda s: s["status"] == "awaiting_continue")
    stack.ok("POST", f"/api/upgrades/{uid}/continue")
    stack.wait_status(uid, done)
    return [uid]


def rollback_after_another_change(stack: Stack, fleet: list[tuple[str, str]]) -> list[str]:
    ((cid, ns),) = fleet
    first = stack.deploy(component="api", version="v1.3.0", strategy="all", customerIds=[cid])
    stack.wait_status(first, done)
    second = stack.deploy(component="dashboard", version="v2.0.0", strategy="all", customerIds=[cid])
    stack.wait_status(second, done)
    stack.ok("POST", f"/api/upgrades/{first}/rollback/{cid}")
    stack.wait(lambda: any(r["operation"] == "rollback" and r["status"] in ("completed", "failed")
                           for r in stack.logs(first)), what="the rollback finished")  # fmt: skip
    return [first, second]


def failed_wait(stack: Stack, fleet: list[tuple[str, str]]) -> list[str]:
    uid = stack.deploy(component="api", version="v9.9.9-broken", strategy="all", customerIds=[c for c, _ in fleet])
    stack.wait_status(uid, done, timeout=HELM_TIMEOUT_SECONDS * 6 + 120)
    return [uid]


def strategy_all(stack: Stack, fleet: list[tuple[str, str]]) -> list[str]:
    uid = stack.deploy(component="api", version="v1.2.1", strategy="all", customerIds=[c for c, _ in fleet])
    stack.wait_status(uid, done)
    return [uid]


def budget_tolerating_one(stack: Stack, fleet: list[tuple[str, str]]) -> list[str]:
    uid = stack.deploy(component="api", version="v1.2.2", strategy="all", failureThreshold={"count": 1},
                       customerIds=[c for c, _ in fleet])  # fmt: skip
    stack.wait_status(uid, done, timeout=HELM_TIMEOUT_SECONDS * 6 + 120)
    return [uid]


SCENARIOS: dict[str, tuple[Callable[[Stack, list[tuple[str, str]]], list[str]], int, tuple[int, ...]]] = {
    # name: (scenario, customers, which of them never get Ready: on the simulated cluster by its unhealthy
    # customers, on the real one by the node agent's fault rule (the image tag the scenario deploys,
    # *-broken, and the namespaces of those customers once their releases are installed))
    "canary": (canary_with_continue, 3, ()),
    "rollback": (rollback_after_another_change, 1, ()),
    "failedwait": (failed_wait, 1, (0,)),
    "all": (strategy_all, 3, ()),
    "budget": (budget_tolerating_one, 4, (2,)),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_simulator_and_the_real_cluster_end_in_the_same_state(name: str, real_cluster: RealCluster,
                                                                   env: dict[str, str]) -> None:  # fmt: skip
    scenario, count, broken = SCENARIOS[name]
    namespaces = [f"customer-cmp{name}{i}" for i in range(count)]
    never_ready = {namespaces[i] for i in broken}
    results = {}
    with (
        simulated_side(never_ready) as side,
        open_stack(side, env["DATABASE_URL"], {}) as sim_stack,
    ):
        ids = scenario(sim_stack, add_customers(sim_stack, namespaces))
        results["simulated"] = snapshot(sim_stack, ids, namespaces)
    truncate_all(env["DATABASE_URL"])  # the same ids (upgrades, log rows, so Job names) on the real side
    with open_stack(real_cluster, env["DATABASE_URL"], real_cluster.product_env()) as real_stack:
        fleet = add_customers(real_stack, namespaces)
        real_cluster.faults.never_ready_namespaces.update(never_ready)
        try:
            ids = scenario(real_stack, fleet)
        finally:
            real_cluster.faults.never_ready_namespaces.difference_update(never_ready)
        results["real"] = snapshot(real_stack, ids, namespaces)
    # something to compare: every release changed, every customer had its helm Job, the product saw them
    real = results["real"]
    assert all(len(revisions) >= 2 for revisions in real["releases"].values()), real["releases"]
    assert len(real["jobs"]) >= count and all(rows for _, rows in real["product"]), real
    print(f"{name}: {json.dumps(real, default=str)[:1500]}")  # noqa: T201 - what was compared, for the record
    assert results["simulated"]["product"] == results["real"]["product"]
    assert results["simulated"]["jobs"] == results["real"]["jobs"]
    assert results["simulated"]["releases"] == results["real"]["releases"]
