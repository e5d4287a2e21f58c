"""Demo customers: seeded once into an empty inventory, shaped like the spec's examples."""

from __future__ import annotations

from upgrader import factory

from upgradectl.local.seed import demo_customers, release_values, seed_demo_customers


def test_demo_customers_follow_the_spec_example_ids():
    customers = demo_customers(50)
    assert len({c.customer_id for c in customers}) == 50
    first = customers[0]
    assert (first.customer_id, first.namespace, first.release_name) == (
        "cust_abc123",
        "customer-abc123",
        "customer-abc123",
    )
    assert customers[-1].customer_id == "cust_abc172"
    assert set(first.versions) == {"api", "dashboard", "exporter", "mosquitto"}
    assert release_values(first)["api.image.tag"] == "v1.1.0"
    # every tenth customer lags behind, so from_version is not uniform
    assert customers[9].versions["api"] == "v1.0.3"


def test_seed_fills_an_empty_inventory_once_and_starts_upgrade_ids_at_123(env, repo, sql):
    # Given an empty inventory, when the stack seeds 7 demo customers
    seeded = seed_demo_customers(repo, factory.database(), 7)
    # Then 7 customers with namespaces and current versions exist
    assert [c.customer_id for c in seeded] == [f"cust_abc{n}" for n in range(123, 130)]
    rows = sql("SELECT id, namespace, status FROM customers ORDER BY id")
    assert [(r["id"], r["namespace"], r["status"]) for r in rows][0] == ("cust_abc123", "customer-abc123", "active")
    versions = sql("SELECT count(*) AS n FROM customer_component_versions")[0]["n"]
    assert versions == 7 * 4
    # and the first upgrade will get id 123 (the spec's curl examples use it)
    assert sql("SELECT nextval('system_upgrades_id_seq') AS n")[0]["n"] == 123
    # When it starts again on the same database, nothing more is seeded
    assert seed_demo_customers(repo, factory.database(), 7) == []
    assert sql("SELECT count(*) AS n FROM customers")[0]["n"] == 7


def test_seed_keeps_an_existing_inventory(env, repo, make_customers, sql):
    make_customers(3)
    assert seed_demo_customers(repo, factory.database(), 50) == []
    assert sql("SELECT count(*) AS n FROM customers")[0]["n"] == 3


def test_seed_zero_customers_does_nothing(env, repo, sql):
    assert seed_demo_customers(repo, factory.database(), 0) == []
    assert sql("SELECT count(*) AS n FROM customers")[0]["n"] == 0
