"""Demo customers: created in the simulated cluster, shaped like the spec's examples, found by discovery."""

from __future__ import annotations

from upgrader import factory

from upgradectl.local import seed
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.runtime import LocalRuntime


def test_demo_customers_follow_the_spec_example_ids():
    customers = seed.demo_customers(50)
    assert len({c.customer_id for c in customers}) == 50
    first = customers[0]
    assert (first.customer_id, first.namespace, first.release_name) == (
        "cust_abc123",
        "customer-abc123",
        "customer-abc123",
    )
    assert customers[-1].customer_id == "cust_abc172"
    assert set(first.versions) == {"api", "dashboard", "exporter", "mosquitto"}
    assert first.values["api.image.tag"] == "v1.1.0"
    # an up-to-date release leaves mosquitto to the chart's defaults; a lagging one sets it
    assert "mosquitto.image.tag" not in first.values
    # every tenth customer lags behind, so from_version is not uniform
    assert customers[9].versions["api"] == "v1.0.3"
    assert customers[9].values["mosquitto.image.tag"] == "2.0.15"


def test_demo_fleet_enters_the_inventory_by_discovery_and_upgrade_ids_start_at_123(env, database_url, sql):
    # Given demo customers created as namespaces and Helm releases in the simulated cluster
    demo = seed.demo_customers(7)
    with SimulatedCluster() as cluster, LocalRuntime(database_url=database_url, kube_api_url=cluster.url) as runtime:
        seed.install_demo_releases(cluster, demo, "1.5.0")
        # When the stack runs its start-up sync
        synced = runtime.sync("local.startup")
        seed.label_demo_customers(factory.database(), demo)
        seed.start_upgrade_ids_at(factory.database())
    # Then discovery added them with the spec's ids, versions read from the releases (and chart defaults)
    assert synced["status"] == "completed" and synced["counts"]["added"] == 7
    rows = sql("SELECT id, namespace, status, labels, chart_version FROM customers ORDER BY id")
    assert [r["id"] for r in rows] == [f"cust_abc{n}" for n in range(123, 130)]
    assert (rows[0]["namespace"], rows[0]["status"], rows[0]["chart_version"]) == ("customer-abc123", "active", "1.5.0")
    assert rows[0]["labels"] == {"tier": "standard", "region": "eu-west-1"}
    versions = sql(
        "SELECT version FROM customer_component_versions WHERE customer_id = 'cust_abc123' ORDER BY component"
    )
    assert [v["version"] for v in versions] == ["v1.1.0", "v1.9.0", "v1.0.0", "2.0.18"]
    # and the first upgrade will get id 123 (the spec's curl examples use it)
    assert sql("SELECT nextval('system_upgrades_id_seq') AS n")[0]["n"] == 123


def test_upgrade_ids_are_not_moved_once_an_upgrade_was_recorded(env, sql):
    sql("SELECT nextval('system_upgrades_id_seq')")
    seed.start_upgrade_ids_at(factory.database())
    assert sql("SELECT nextval('system_upgrades_id_seq') AS n")[0]["n"] == 2
