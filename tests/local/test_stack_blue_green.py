"""The blue-green example of docs/howto/blue-green.md against the local stack, as a separate process driven over HTTP:
`upgrade-local --blue-green-customers 2`, a blue-green deploy to the customers labelled
rollout=blue-green, then a rollback that switches one back. What each release holds is read from the
simulated cluster over HTTP (Helm's own encoding), as an outside check would."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from upgrader.cluster.discovery import KubernetesFleetReader
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import ClusterConfig

from tests.local.conftest import StackProcess, stack_env
from tests.support.database import temporary_database

pytestmark = pytest.mark.e2e

BLUE_GREEN_IDS = ["cust_abc126", "cust_abc127"]


@pytest.fixture(scope="module")
def bluegreen_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """3 plain demo customers (cust_abc123..125), then 2 on the blue-green sample chart (cust_abc126..127)."""
    with temporary_database(prefix="upgrades_local_bg") as url:
        stack = StackProcess(
            ["--customers", "3", "--blue-green-customers", "2", "--job-seconds", "0.2", "--poll-seconds", "0"],
            stack_env(DATABASE_URL=url),
            tmp_path_factory.mktemp("local-stack-bg"),
        )
        yield stack
        assert stack.stop(signal.SIGINT) == 0, stack.output


def slots(stack: StackProcess, customer_id: str) -> dict[str, Any]:
    """The api slots the customer's release holds, read from the simulated cluster over HTTP."""
    found = re.search(r"kmock API server at (http://127\.0\.0\.1:\d+)", stack.stdout_path.read_text())
    assert found
    url, name = found.group(1), f"customer-{customer_id.removeprefix('cust_')}"
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url)) as api_client:
        release = KubernetesClusterGateway(api_client, ClusterConfig(mode="url", api_url=url)).release_status(
            name, name
        )
    slots = release.slots["api"]
    return {"active": slots.active, "tags": slots.tags}


def test_the_banner_names_the_blue_green_customers_and_discovery_reads_their_active_slot(bluegreen_stack):
    banner = bluegreen_stack.stdout_path.read_text()
    assert "Blue-green      2 demo customers on charts/customer-stack-bluegreen" in banner
    assert "cust_abc126 .. cust_abc127" in banner
    for cid in BLUE_GREEN_IDS:
        customer = bluegreen_stack.get(f"/api/customers/{cid}")
        assert customer["versions"]["api"] == "v1.1.0" and customer["labels"]["rollout"] == "blue-green"
    found = re.search(r"kmock API server at (http://127\.0\.0\.1:\d+)", banner)
    assert found
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=found.group(1))) as api_client:
        reader = KubernetesFleetReader(api_client, ClusterConfig(mode="url", api_url=found.group(1)))
        snapshot = reader.release_in("customer-abc126", "customer-abc126")
    assert snapshot is not None and snapshot.versions["api"] == "v1.1.0" and snapshot.sources["api"] == "active-slot"


def test_the_readme_example_upgrades_blue_green_then_switches_one_back(bluegreen_stack):
    code, started = bluegreen_stack.request("POST", "/api/upgrades/deploy", {
        "component": "api", "version": "v1.2.0", "strategy": "all", "blueGreen": True,
        "labels": {"rollout": "blue-green"}, "healthCheck": {"httpPath": "/healthz"},
    })  # fmt: skip
    assert code == 202, started
    assert started["total"] == 2
    final = bluegreen_stack.wait_status(started["upgradeId"], {"completed", "failed", "halted"}, timeout=120)
    assert (final["status"], final["completed"], final["blueGreen"]) == ("completed", 2, True)
    for cid in BLUE_GREEN_IDS:
        assert slots(bluegreen_stack, cid) == {"active": "green", "tags": {"blue": "v1.1.0", "green": "v1.2.0"}}
    assert bluegreen_stack.get("/api/customers/cust_abc126")["versions"]["api"] == "v1.2.0"

    code, data = bluegreen_stack.request("POST", f"/api/upgrades/{started['upgradeId']}/rollback/cust_abc126")
    assert code == 202, data
    logs = _wait_rollback(bluegreen_stack, started["upgradeId"], data["rollbackId"])
    assert logs["status"] == "completed" and "switching api back to slot blue" in logs["output"]
    assert slots(bluegreen_stack, "cust_abc126") == {"active": "blue", "tags": {"blue": "v1.1.0", "green": "v1.2.0"}}
    assert slots(bluegreen_stack, "cust_abc127")["active"] == "green"


def _wait_rollback(stack: StackProcess, upgrade_id: str, rollback_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = stack.get(f"/api/upgrades/{upgrade_id}/logs?operation=rollback")["logs"]
        row = next((r for r in rows if r["id"] == rollback_id), None)
        if row is not None and row["status"] not in ("pending", "in_progress"):
            return dict(row)
        assert time.monotonic() < deadline, f"rollback never finished: {row}\n{stack.output}"
        time.sleep(0.1)
