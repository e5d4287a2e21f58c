"""`upgrade-local --cluster real` as an operator runs it: the README's walkthrough on the real control plane,
the admin kubeconfig of the banner usable by the real helm, and a quick, clean stop (every process gone).

It starts as `make run` does, with the demo image registry and the images' pre-flight (docs/images.md, "Locally"):
a tag never pushed is refused before anything starts, a pushed one is pinned to its digest in the real release,
and a pinned `*-broken` tag still never gets Ready on the node agent."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.local.conftest import StackProcess, stack_env
from tests.realcluster.conftest import HELM_TIMEOUT_SECONDS, require_real_cluster
from tests.support.database import temporary_database
from upgradectl.local.realcluster.helm import helm
from upgradectl.local.registry import Skopeo

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_walkthrough_on_a_real_control_plane_then_a_clean_stop(tmp_path: Path) -> None:
    require_real_cluster()
    with temporary_database(prefix="upgrades_real") as url:
        began = time.monotonic()
        stack = StackProcess(["--cluster", "real", "--helm", "3", "--customers", "3", "--sync-seconds", "0"],
                             stack_env(DATABASE_URL=url, HELM_TIMEOUT_SECONDS=str(HELM_TIMEOUT_SECONDS)), tmp_path,
                             ready_timeout=900, registry=True)  # fmt: skip
        started = time.monotonic() - began
        children: list[psutil.Process] = []
        try:
            banner = stack.stdout_path.read_text()
            assert "REAL control plane at https://127.0.0.1:" in banner, banner
            kubeconfig = re.search(r"kubeconfig \(admin\): (\S+)", banner)
            assert kubeconfig, banner
            children = psutil.Process(stack.process.pid).children(recursive=True)
            names = [c.name() for c in children]
            assert {"etcd", "kube-apiserver", "kube-controller-manager"} <= set(names), names
            assert names.count("docker-registry") == 2, names  # the chart registry and the image registry, apart
            images = _image_registry(banner)
            assert "IMAGE_PREFLIGHT=auto" in banner and images not in _chart_registry(banner), banner
            real_helm = _RealHelm(kubeconfig.group(1))
            # an operator's helm with the banner's kubeconfig sees the demo releases
            listed = subprocess.run([str(helm("3").path), "--kubeconfig", kubeconfig.group(1), "list", "-A", "-o", "json"],  # noqa: S603
                                    capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
            releases = {r["name"]: r for r in json.loads(listed.stdout)}
            assert set(releases) == {"customer-abc123", "customer-abc124", "customer-abc125"}
            assert {r["status"] for r in releases.values()} == {"deployed"}
            # every real release names the image registry's repositories
            assert {real_helm.values(r)["api"]["image"]["repository"] for r in releases} == {f"{images}/api"}
            # a tag never pushed: 422 ImagesRefused, nothing written (no upgrade, no helm revision)
            code, refused = stack.request("POST", "/api/upgrades/deploy", {"component": "api", "version": "v1.2.1",
                                                                          "strategy": "all"})  # fmt: skip
            assert (code, refused["error"]) == (422, "ImagesRefused"), refused
            assert {p["image"] for p in refused["problems"]} == {f"{images}/api:v1.2.1"}, refused
            assert stack.get("/api/upgrades")["upgrades"] == []
            assert {r: len(real_helm.history(r)) for r in releases} == dict.fromkeys(releases, 1)
            # the README's walkthrough: canary 10 %, status, continue, logs, rollback one customer
            code, deployed = stack.request("POST", "/api/upgrades/deploy", {"component": "api", "version": "v1.2.0",
                                                                           "strategy": "canary", "canaryPercent": 10})  # fmt: skip
            assert code == 202 and deployed["upgradeId"] == "123", deployed
            stack.wait_status("123", {"awaiting_continue"}, timeout=240)
            assert stack.request("POST", "/api/upgrades/123/continue")[0] == 200
            final = stack.wait_status("123", {"completed", "halted", "failed", "completed_with_failures"}, timeout=300)
            assert (final["status"], final["completed"]) == ("completed", 3), final
            # the real release holds the tag pinned to the digest the registry serves
            digest = Skopeo("skopeo", tmp_path / "skopeo").digest(images, "api", "v1.2.0")
            assert {real_helm.values(r)["api"]["image"]["tag"] for r in releases} == {f"v1.2.0@{digest}"}
            logs = stack.get("/api/upgrades/123/logs")["logs"]
            assert all("has been upgraded" in (log["output"] or "") for log in logs), logs
            code, rolled = stack.request("POST", "/api/upgrades/123/rollback/cust_abc123")
            assert code == 202, rolled
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                rows = stack.get("/api/upgrades/123/logs?operation=rollback")["logs"]
                if rows and rows[0]["status"] in ("completed", "failed"):
                    break
                time.sleep(1)
            assert rows and rows[0]["status"] == "completed", rows
            history = [h["status"] for h in real_helm.history("customer-abc123")]
            assert history == ["superseded", "superseded", "deployed"]
            # a pushed never-Ready tag, pinned too: its pods never get Ready, helm --wait fails, --atomic rolls back
            code, broken = stack.request("POST", "/api/upgrades/deploy", {"component": "api", "version": "v1.2.0-broken",
                                                                         "strategy": "all", "customerIds": ["cust_abc124"]})  # fmt: skip
            assert code == 202, broken
            final = stack.wait_status(broken["upgradeId"], {"completed", "halted", "failed", "completed_with_failures"},
                                      timeout=HELM_TIMEOUT_SECONDS * 6 + 120)  # fmt: skip
            assert final["status"] in ("halted", "failed") and final["failed"] == 1, final
            assert [h["status"] for h in real_helm.history("customer-abc124")] == ["superseded", "superseded", "failed",
                                                                                   "deployed"]  # fmt: skip
            assert real_helm.values("customer-abc124")["api"]["image"]["tag"] == f"v1.2.0@{digest}"
        finally:
            stopping = time.monotonic()
            code = stack.stop(signal.SIGINT, timeout=60)
            stopped = time.monotonic() - stopping
        print(f"real stack: started in {started:.1f} s, stopped in {stopped:.1f} s")  # noqa: T201 - a figure for the README
        assert code == 0, stack.output
        assert "stopped cleanly" in stack.stdout_path.read_text()
        # every process it started is gone
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], alive


def _image_registry(banner: str) -> str:
    found = re.search(r"registry http://(127\.0\.0\.1:\d+) \(docker-registry", banner)
    assert found, banner
    return found.group(1)


def _chart_registry(banner: str) -> str:
    found = re.search(r"charts from (\S+);", banner)
    assert found, banner
    return found.group(1)


class _RealHelm:
    """The real helm as an operator runs it, with the banner's admin kubeconfig (a customer's release is named and
    namespaced as the customer)."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig

    def _json(self, *args: str) -> Any:
        done = subprocess.run([str(helm("3").path), "--kubeconfig", self.kubeconfig, *args, "-o", "json"],  # noqa: S603
                              capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
        return json.loads(done.stdout)

    def values(self, release: str) -> dict[str, Any]:
        return dict(self._json("get", "values", release, "-n", release))

    def history(self, release: str) -> list[dict[str, Any]]:
        return list(self._json("history", release, "-n", release))
