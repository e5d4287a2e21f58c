"""The real cluster, assembled: control plane + chart registry + node agent + the project's RBAC.

    with RealCluster(helm_major="3") as cluster:
        cluster.add_release("customer-a", "customer-a", values={"api.image.tag": "v1.1.0"}, chart_version="1.5.0")
        cluster.helm("list", "-A")                 # the real helm, as the admin
        cluster.product_env()                      # KUBE_API_URL, tokens, CA, CHART_REFS, HELM_IMAGE ...

k8s/rbac is applied as it is (the per-customer bindings, 31-*, once per customer namespace with the
namespace replaced, as its header says). The product's identities are static tokens in the groups
k8s/rbac binds; the helm Jobs run as upgrade-system/upgrade-runner (TokenRequest, in the agent).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml
from upgrader.infra.components import component_names

from upgradectl.local.functions import ROOT
from upgradectl.local.realcluster.agent import FaultRule, NodeAgent
from upgradectl.local.realcluster.controlplane import ADMIN_USER, JOBS_USER, READER_USER, ControlPlane, build_binaries
from upgradectl.local.realcluster.helm import Helm, helm
from upgradectl.local.realcluster.processes import StartError
from upgradectl.local.realcluster.registry import ChartRegistry
from upgradectl.local.simcluster.charts import DEFAULT_CHART_NAME, ChartCatalog, default_charts

RBAC_DIR = ROOT / "k8s" / "rbac"
PER_NAMESPACE_MANIFEST = "31-customer-namespace-bindings.yaml"
TEMPLATE_NAMESPACE = "customer-0001"
# kind -> (API path prefix, resource, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
}
ADMIN_HELM_TIMEOUT = "120s"


class RealCluster:
    def __init__(self, helm_major: str = "3", directory: Path | None = None, faults: FaultRule | None = None,
                 rbac_dir: Path = RBAC_DIR) -> None:  # fmt: skip
        self.helm_major = helm_major
        self._own_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="real-k8s-"))
        self.faults = faults or FaultRule()
        self.rbac_dir = rbac_dir
        self.charts = ChartCatalog(default_charts())
        self.control_plane: ControlPlane | None = None
        self.registry: ChartRegistry | None = None
        self.agent: NodeAgent | None = None
        self.helm_binary: Helm | None = None
        self.admin_kubeconfig = self.directory / "admin.kubeconfig"
        self.timings: dict[str, float] = {}
        self._onboarded: set[str] = set()
        self._session = requests.Session()

    def __enter__(self) -> RealCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.control_plane is not None
        return self.control_plane.url

    # --- start / stop -------------------------------------------------------------------------------

    def start(self) -> RealCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        mark = time.monotonic()
        bin_dir = build_binaries()
        self.helm_binary = helm(self.helm_major)
        self.timings["binaries"] = time.monotonic() - mark
        mark = time.monotonic()
        self.control_plane = plane = ControlPlane(self.directory, bin_dir).start()
        self.timings["control plane"] = time.monotonic() - mark
        self._session.verify = str(plane.ca_file)
        self._session.headers["Authorization"] = f"Bearer {plane.tokens[ADMIN_USER]}"
        plane.write_kubeconfig("admin", ADMIN_USER)
        mark = time.monotonic()
        for path in sorted(self.rbac_dir.glob("*.yaml")):
            if path.name != PER_NAMESPACE_MANIFEST:
                self.apply(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        assert plane.pki is not None
        self.registry = ChartRegistry(self.directory / "registry", plane.pki, tls=self.helm_major != "3").start()
        self.registry.push(self.helm_binary.path, [self.charts.get(n, v) for n in self.charts.names()
                                                   for v in self.charts.versions(n)], self.helm_env())  # fmt: skip
        self.agent = NodeAgent(plane.url, plane.ca_file, plane.tokens[ADMIN_USER], self.helm_binary,
                               self.directory / "agent", plane.pki, expected_image=self.helm_binary.image,
                               faults=self.faults).start()  # fmt: skip
        self.timings["rbac, charts, node"] = time.monotonic() - mark

    def stop(self) -> None:
        """The agent (and its helm processes), the registry, the control plane: each by its PID."""
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
        if self.registry is not None:
            self.registry.stop()
            self.registry = None
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None
        if self._own_dir and not os.environ.get("KEEP_REAL_CLUSTER_DIR"):
            shutil.rmtree(self.directory, ignore_errors=True)

    # --- what the product and its operators get -------------------------------------------------------

    def product_env(self) -> dict[str, str]:
        """The environment of the local runtime's workers for this cluster (url mode, both identities)."""
        plane, registry, binary = self.control_plane, self.registry, self.helm_binary
        assert plane is not None and registry is not None and binary is not None
        ref = registry.chart_ref(DEFAULT_CHART_NAME)
        return {
            "KUBE_CA_FILE": str(plane.ca_file),
            "CHART_REFS": json.dumps(dict.fromkeys(component_names(), ref)),
            "HELM_IMAGE": binary.image,
        }

    @property
    def jobs_token_file(self) -> Path:
        assert self.control_plane is not None
        return self.control_plane.token_file(JOBS_USER)

    @property
    def reader_token_file(self) -> Path:
        assert self.control_plane is not None
        return self.control_plane.token_file(READER_USER)

    def helm_env(self) -> dict[str, str]:
        """The environment of helm run by hand as the admin (kubeconfig, CA for the chart registry)."""
        assert self.control_plane is not None
        home = self.directory / "helm-home"
        home.mkdir(exist_ok=True)
        return {"PATH": "/usr/bin:/bin", "HOME": str(home), "KUBECONFIG": str(self.admin_kubeconfig),
                "SSL_CERT_FILE": str(self.control_plane.ca_file)}  # fmt: skip

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The real helm, as the admin."""
        assert self.helm_binary is not None
        result = subprocess.run([str(self.helm_binary.path), *args], capture_output=True, text=True,  # noqa: S603
                                env=self.helm_env(), timeout=timeout, check=False)  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-600:]}")
        return result

    # --- the API as the admin -----------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        response = self._session.request(method, self.url + path, data=None if body is None else json.dumps(body),
                                         headers={"Content-Type": content_type}, timeout=30,
                                         verify=self._session.verify)  # explicit: REQUESTS_CA_BUNDLE would win over the session's  # fmt: skip
        if response.status_code == 404 and method in ("GET", "DELETE"):
            return None
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code}: {response.text[:400]}")
        return response.json() if response.content else None

    def apply(self, documents: Iterable[Mapping[str, Any] | None]) -> None:
        """Create or replace each document (the kinds k8s/rbac uses)."""
        for document in documents:
            if not document:
                continue
            prefix, resource, namespaced = KINDS[str(document["kind"])]
            meta = document["metadata"]
            base = prefix + (f"/namespaces/{meta['namespace']}" if namespaced else "") + f"/{resource}"
            current = self.request("GET", f"{base}/{meta['name']}")
            if current is None:
                self.request("POST", base, dict(document))
            else:
                body = json.loads(json.dumps(document))
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.request("PUT", f"{base}/{meta['name']}", body)

    def onboard(self, namespace: str) -> None:
        """A customer namespace with the per-namespace bindings of k8s/rbac (31-*), as its header says."""
        if namespace in self._onboarded:
            return
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
        text = (self.rbac_dir / PER_NAMESPACE_MANIFEST).read_text(encoding="utf-8")
        self.apply(yaml.safe_load_all(text.replace(TEMPLATE_NAMESPACE, namespace)))
        self._onboarded.add(namespace)

    def add_release(self, namespace: str, release: str, *, values: Mapping[str, str], chart_version: str | None = None,
                    chart_name: str | None = None, wait: bool = True) -> None:  # fmt: skip
        """A customer's release, installed by the real helm from the chart registry (upgrade --install)."""
        assert self.registry is not None
        self.onboard(namespace)
        name = chart_name or DEFAULT_CHART_NAME
        version = chart_version or self.charts.get(name).version
        sets = [arg for key, value in sorted(values.items()) for arg in ("--set-string", f"{key}={value}")]
        self.helm("upgrade", "--install", release, self.registry.chart_ref(name), "--version", version,
                  "--namespace", namespace, *sets, *(["--wait", "--timeout", ADMIN_HELM_TIMEOUT] if wait else []))  # fmt: skip

    def add_releases(
        self, releases: list[tuple[str, str, Mapping[str, str], str | None, str | None]], workers: int = 3
    ) -> None:
        """Several (namespace, release, values, chart version, chart name) at once, a few helm at a time."""
        for namespace, *_ in releases:
            self.onboard(namespace)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(self.add_release, ns, rel, values=vals, chart_version=ver, chart_name=chart)
                           for ns, rel, vals, ver, chart in releases]:  # fmt: skip
                future.result()

    def releases(self, namespace: str) -> list[dict[str, Any]]:
        """`helm history` of every release in the namespace, by the real helm (JSON)."""
        listed = json.loads(self.helm("list", "--namespace", namespace, "--all", "--output", "json").stdout or "[]")
        return [dict(item) for item in listed]


__all__ = ["FaultRule", "RealCluster", "StartError"]
