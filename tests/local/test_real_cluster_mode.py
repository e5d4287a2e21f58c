"""`upgrade-local --kubeconfig`: the workers reach the cluster through a kubeconfig file.

No real cluster can run here, so the kubeconfig points at the simulated cluster's API server: the
path under test is the kubeconfig-file cluster mode (settings -> ClusterConfig -> ApiClient).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from upgrader.cluster.types import ClusterConfig
from upgrader.infra import names
from upgrader.infra.settings import Settings

from tests.api.helpers import deploy, logs, status
from upgradectl.local import cluster_modes
from upgradectl.local import options as local_options
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.runtime import LocalRuntime


def write_kubeconfig(path: Path, server: str, context: str = "kind-dev", token: str = "t0ken") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "dev", "cluster": {"server": server}}],
                "users": [{"name": "dev", "user": {"token": token}}],
                "contexts": [{"name": context, "context": {"cluster": "dev", "user": "dev"}}],
                "current-context": context,
            }
        )
    )
    return path


def test_settings_and_cluster_config_take_a_kubeconfig_path():
    settings = Settings.from_env({"CLUSTER_MODE": "kubeconfig-file", "KUBECONFIG_PATH": "/k/config"})
    config = ClusterConfig.from_settings(settings)
    assert (config.mode, config.kubeconfig_path) == ("kubeconfig-file", "/k/config")
    with pytest.raises(ValueError, match="kubeconfig_path"):
        ClusterConfig(mode="kubeconfig-file")


def test_api_client_from_a_kubeconfig_file(tmp_path):
    from upgrader.cluster.access import build_api_client

    path = write_kubeconfig(tmp_path / "config", "https://10.0.0.1:6443")
    client = build_api_client(ClusterConfig(mode="kubeconfig-file", kubeconfig_path=str(path)))
    assert client.configuration.host == "https://10.0.0.1:6443"
    assert client.configuration.api_key["BearerToken"] == "Bearer t0ken"


def test_an_unusable_kubeconfig_file_is_a_permanent_error(tmp_path):
    from upgrader.cluster.access import build_api_client
    from upgrader.cluster.types import ClusterPermanentError

    (tmp_path / "config").write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(ClusterPermanentError, match="unusable kubeconfig file"):
        build_api_client(ClusterConfig(mode="kubeconfig-file", kubeconfig_path=str(tmp_path / "config")))


def test_start_up_names_the_real_cluster_or_refuses_a_missing_file(tmp_path):
    path = write_kubeconfig(tmp_path / "config", "https://10.0.0.1:6443", context="prod-eu")
    line = cluster_modes.describe_real_cluster(cluster_modes.kubeconfig_path(str(path)))
    assert line.startswith("REAL cluster") and "'prod-eu'" in line and "https://10.0.0.1:6443" in line
    with pytest.raises(cluster_modes.StartupError, match="no kubeconfig file"):
        cluster_modes.kubeconfig_path(str(tmp_path / "missing"))


@pytest.mark.e2e
def test_an_upgrade_runs_through_the_kubeconfig_file_mode(env, database_url, make_customers, tmp_path):
    with SimulatedCluster(job_duration_seconds=0.05) as cluster:
        # an operator's kubeconfig (one context for every worker): both of the product's identities; RBAC applies
        token = cluster.token_for("operator", [names.JOBS_KUBERNETES_GROUP, names.READER_KUBERNETES_GROUP])
        path = write_kubeconfig(tmp_path / "config", cluster.url, token=token)
        extra = {"CLUSTER_MODE": "kubeconfig-file", "KUBECONFIG_PATH": str(path)}
        with LocalRuntime(database_url=database_url, kube_api_url="", poll_seconds=0, extra_env=extra) as runtime:
            for cid in make_customers(3):
                name = f"customer-{cid.replace('_', '-').removeprefix('cust-')}"
                cluster.add_release(name, name)
            started = deploy(component="api", version="v1.2.0", strategy="all")
            assert runtime.wait(started["jobId"])["status"] == "SUCCEEDED"
        # The execution succeeds even when customers fail: what counts is each customer's outcome
        code, final = status(started["upgradeId"])
        assert code == 200 and (final["status"], final["completed"], final["failed"]) == ("completed", 3, 0), final
        code, page = logs(started["upgradeId"])
        assert code == 200 and [e["status"] for e in page["logs"]] == ["completed"] * 3
        assert all("has been upgraded" in e["output"] and e["error"] is None for e in page["logs"]), page
        # and each went through the API server of the kubeconfig file: one helm Job per customer
        customers = [
            job.manifest["metadata"]["labels"]["upgrades.example.com/customer-id"] for job in cluster.created_jobs
        ]
        assert sorted(customers) == ["cust_0001", "cust_0002", "cust_0003"]


@pytest.mark.e2e
def test_discovery_reads_the_cluster_of_the_kubeconfig_file(env, database_url, sql, tmp_path):
    # Given a "real" cluster (reached only through a kubeconfig file) with two customer releases
    with SimulatedCluster() as cluster:
        cluster.add_release("customer-abc123", "customer-abc123", values={"api.image.tag": "v1.1.0"})
        cluster.add_release("customer-abc124", "customer-abc124", values={"api.image.tag": "v1.0.3"})
        cluster.add_namespace("kube-system")
        path = write_kubeconfig(tmp_path / "config", cluster.url)
        extra = {"CLUSTER_MODE": "kubeconfig-file", "KUBECONFIG_PATH": str(path)}
        # When the local stack's start-up sync runs in kubeconfig-file mode
        with LocalRuntime(database_url=database_url, kube_api_url="", extra_env=extra) as runtime:
            synced = runtime.sync("local.startup")
    # Then the inventory holds that cluster's customers, with the versions their releases run
    assert (synced["status"], synced["trigger"], synced["counts"]["added"]) == ("completed", "startup", 2)
    rows = sql("SELECT c.id, v.version FROM customers c JOIN customer_component_versions v ON v.customer_id = c.id"
               " WHERE v.component = 'api' ORDER BY c.id")  # fmt: skip
    assert [(r["id"], r["version"]) for r in rows] == [("cust_abc123", "v1.1.0"), ("cust_abc124", "v1.0.3")]


def test_demo_customers_are_for_the_simulated_cluster_only(capsys):
    with pytest.raises(SystemExit):
        local_options.parse_args(["--kubeconfig", "/k/config", "--customers", "5"])
    assert "discovery" in capsys.readouterr().err
