"""The product against a REAL Kubernetes control plane with the real helm (upgradectl/local/realcluster).

One real cluster per test module and helm version (3 and 4: the `real_cluster` fixture is parametrized),
the product's runtime (real handlers, real ASL on moto, PostgreSQL) and its HTTP API per test. Each
test uses its own customer namespaces, so the cluster is shared safely within a module.

Prerequisites: the control plane built (`make real-cluster-build`), etcd-server and docker-registry from
Debian. Missing, these tests fail under CI or with REAL_CLUSTER_REQUIRED=1 (`make test-real`), and skip
elsewhere naming the command that installs them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from upgrader import factory

from tests.support.tools import under_ci
from upgradectl.local.realcluster.cluster import RealCluster
from upgradectl.local.realcluster.helm import CACHE
from upgradectl.local.runtime import LocalRuntime
from upgradectl.local.server import LocalApiServer

HELM_TIMEOUT_SECONDS = 30  # the product's helm --timeout: a pod that never gets Ready fails after this, not 600 s
_names = itertools.count(1)


def missing_prerequisites() -> list[str]:
    missing = []
    if not any(CACHE.glob("*/bin/kube-apiserver")) or not any(CACHE.glob("*/bin/kube-controller-manager")):
        missing.append(f"the control plane binaries under {CACHE}")
    for tool in ("etcd", "docker-registry", "openssl"):
        if not shutil.which(tool):
            missing.append(tool)
    return missing


def require_real_cluster() -> None:
    missing = missing_prerequisites()
    if not missing:
        return
    message = f"the real control plane needs {', '.join(missing)} (install: make real-cluster-build)"
    if under_ci() or os.environ.get("REAL_CLUSTER_REQUIRED"):
        pytest.fail(f"{message}; CI must run every test", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module", params=["3", "4"], ids=["helm3", "helm4"])
def real_cluster(request: pytest.FixtureRequest) -> Iterator[RealCluster]:
    require_real_cluster()
    with RealCluster(helm_major=str(request.param)) as cluster:
        yield cluster
    # every process it started is gone
    assert all(not p.alive() for p in (cluster.control_plane.processes if cluster.control_plane else []))


class Stack:
    """The product over HTTP, on the real cluster."""

    def __init__(self, runtime: LocalRuntime, server: LocalApiServer, cluster: Any) -> None:
        self.runtime = runtime
        self.server = server
        self.cluster = cluster  # a RealCluster, or the simulated one (test_simulator_vs_real.SimulatedSide)
        self.base = f"http://127.0.0.1:{server.port}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if method != "GET" else {}
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        code, data = self.call(method, path, body)
        assert code in (200, 201, 202), (method, path, code, data)
        return data

    def sync(self) -> dict[str, Any]:
        result = self.runtime.sync("test")
        assert result.get("status") == "completed", result
        return result

    def customer_id(self, namespace: str) -> str:
        for item in self.ok("GET", "/api/customers?limit=500")["customers"]:
            if item["namespace"] == namespace:
                return str(item["customerId"])
        raise AssertionError(f"no customer in namespace {namespace}")

    def deploy(self, **body: Any) -> str:
        return str(self.ok("POST", "/api/upgrades/deploy", body)["upgradeId"])

    def status(self, upgrade_id: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/api/upgrades/{upgrade_id}/status"))

    def logs(self, upgrade_id: str) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"/api/upgrades/{upgrade_id}/logs?limit=100")["logs"])

    def wait_status(
        self, upgrade_id: str, wanted: Callable[[dict[str, Any]], bool], timeout: float = 240
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.status(upgrade_id)
            if wanted(data):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"status never matched; last: {data}")
            time.sleep(0.5)

    def wait(self, condition: Callable[[], Any], timeout: float = 240, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never held")
            time.sleep(0.3)

    # --- the cluster, read with the real helm ---------------------------------------------------------

    def history(self, namespace: str, release: str) -> list[dict[str, Any]]:
        out = self.cluster.helm("history", release, "--namespace", namespace, "--output", "json").stdout
        return [dict(item) for item in json.loads(out)]

    def values(self, namespace: str, release: str, revision: int | None = None) -> dict[str, Any]:
        extra = ["--revision", str(revision)] if revision else []
        out = self.cluster.helm("get", "values", release, "--namespace", namespace, "--output", "json", *extra).stdout
        return dict(json.loads(out) or {})


@contextlib.contextmanager
def open_stack(cluster: Any, database_url: str, extra_env: dict[str, str]) -> Iterator[Stack]:
    """The product (runtime + HTTP API) on `cluster`: a RealCluster or a SimulatedSide."""
    runtime = LocalRuntime(
        database_url=database_url, kube_api_url=cluster.url, kube_token_file=str(cluster.jobs_token_file),
        kube_reader_token_file=str(cluster.reader_token_file), poll_seconds=1,
        extra_env={**extra_env, "HELM_TIMEOUT_SECONDS": str(HELM_TIMEOUT_SECONDS)},
    )  # fmt: skip
    runtime.start()
    server = LocalApiServer(("127.0.0.1", 0), workers=2, access_log=False).start()
    try:
        yield Stack(runtime, server, cluster)
    finally:
        server.stop()
        runtime.stop()
        factory.reset()


@pytest.fixture
def stack(real_cluster: RealCluster, env: dict[str, str]) -> Iterator[Stack]:
    with open_stack(real_cluster, env["DATABASE_URL"], real_cluster.product_env()) as opened:
        yield opened


@pytest.fixture
def customers(stack: Stack) -> Callable[..., list[tuple[str, str]]]:
    """n customers with a real release each (chart customer-stack 1.5.0, the demo's current versions),
    in namespaces no other test uses; synced into the inventory. Returns [(customer id, namespace)]."""

    def make(n: int, *, chart_name: str | None = None) -> list[tuple[str, str]]:
        batch = next(_names)
        return add_customers(stack, [f"customer-r{os.getpid() % 1000}b{batch}n{i}" for i in range(n)], chart_name)

    return make


def add_customers(stack: Stack, namespaces: list[str], chart_name: str | None = None) -> list[tuple[str, str]]:
    """A release per namespace (the demo's current versions), synced into the inventory: [(id, namespace)]."""
    tags = ({"api.image.tag": "v1.1.0", "dashboard.image.tag": "v1.9.0"} if chart_name is None else
            {"api.slots.blue.tag": "v1.1.0", "dashboard.slots.blue.tag": "v1.9.0"})  # fmt: skip
    version = "1.5.0" if chart_name is None else "2.0.0"
    stack.cluster.add_releases([(ns, ns, tags, version, chart_name) for ns in namespaces])
    stack.sync()
    return [(stack.customer_id(ns), ns) for ns in namespaces]


def helm_output(log: dict[str, Any]) -> str:
    return str(log.get("output") or "")
