"""`upgrade-local --cluster real` as an operator runs it: the README's walkthrough on the real control plane,
the admin kubeconfig of the banner usable by the real helm, and a quick, clean stop (every process gone)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.local.conftest import StackProcess, stack_env
from tests.realcluster.conftest import require_real_cluster
from tests.support.database import temporary_database
from upgradectl.local.realcluster.helm import helm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_walkthrough_on_a_real_control_plane_then_a_clean_stop(tmp_path: Path) -> None:
    require_real_cluster()
    with temporary_database(prefix="upgrades_real") as url:
        began = time.monotonic()
        stack = StackProcess(["--cluster", "real", "--helm", "3", "--customers", "3", "--sync-seconds", "0"],
                             stack_env(DATABASE_URL=url), tmp_path, ready_timeout=900)  # fmt: skip
        started = time.monotonic() - began
        children: list[psutil.Process] = []
        try:
            banner = stack.stdout_path.read_text()
            assert "REAL control plane at https://127.0.0.1:" in banner, banner
            kubeconfig = re.search(r"kubeconfig \(admin\): (\S+)", banner)
            assert kubeconfig, banner
            children = psutil.Process(stack.process.pid).children(recursive=True)
            names = {c.name() for c in children}
            assert {"etcd", "kube-apiserver", "kube-controller-manager", "docker-registry"} <= names, names
            # an operator's helm with the banner's kubeconfig sees the demo releases
            listed = subprocess.run([str(helm("3").path), "--kubeconfig", kubeconfig.group(1), "list", "-A", "-o", "json"],  # noqa: S603
                                    capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
            releases = {r["name"]: r for r in json.loads(listed.stdout)}
            assert set(releases) == {"customer-abc123", "customer-abc124", "customer-abc125"}
            assert {r["status"] for r in releases.values()} == {"deployed"}
            # the README's walkthrough: canary 10 %, status, continue, logs, rollback one customer
            code, deployed = stack.request("POST", "/api/upgrades/deploy", {"component": "api", "version": "v1.2.0",
                                                                           "strategy": "canary", "canaryPercent": 10})  # fmt: skip
            assert code == 202 and deployed["upgradeId"] == "123", deployed
            stack.wait_status("123", {"awaiting_continue"}, timeout=240)
            assert stack.request("POST", "/api/upgrades/123/continue")[0] == 200
            final = stack.wait_status("123", {"completed", "halted", "failed", "completed_with_failures"}, timeout=300)
            assert (final["status"], final["completed"]) == ("completed", 3), final
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
            history = subprocess.run([str(helm("3").path), "--kubeconfig", kubeconfig.group(1), "history", "customer-abc123",
                                      "-n", "customer-abc123", "-o", "json"], capture_output=True, text=True, check=True)  # noqa: S603 # fmt: skip
            assert [h["status"] for h in json.loads(history.stdout)] == ["superseded", "superseded", "deployed"]
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
