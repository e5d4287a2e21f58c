"""Demo customers for the local stack: seeded only when the inventory is empty.

Ids follow the specification's example (`cust_abc123`, namespace `customer-abc123`): the n demo
customers are cust_abc123, cust_abc124, ... so the spec's rollback example names a real customer.
A fresh database also starts upgrade ids at 123, so the spec's curl examples (`/api/upgrades/123/...`)
address the first upgrade deployed, exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from upgrader.db import Database
from upgrader.models import COMPONENTS
from upgrader.repository import UpgradeRepository

FIRST_NUMBER = 123
FIRST_UPGRADE_ID = 123
CURRENT_VERSIONS: dict[str, str] = {"api": "v1.1.0", "dashboard": "v1.9.0", "exporter": "v1.0.0", "mosquitto": "2.0.18"}
# Every tenth customer lags one version behind: real fleets are never uniform.
LAGGING_VERSIONS: dict[str, str] = {"api": "v1.0.3", "dashboard": "v1.8.2", "exporter": "v0.9.1", "mosquitto": "2.0.15"}
TIERS = ("standard", "standard", "premium")
REGIONS = ("eu-west-1", "us-east-1")


@dataclass(frozen=True)
class DemoCustomer:
    customer_id: str
    namespace: str
    release_name: str
    labels: dict[str, str]
    versions: dict[str, str]


def demo_customers(count: int) -> list[DemoCustomer]:
    """The demo inventory: ids cust_abc123.., one namespace and Helm release each, current versions."""
    customers = []
    for index in range(count):
        suffix = f"abc{FIRST_NUMBER + index}"
        versions = LAGGING_VERSIONS if index % 10 == 9 else CURRENT_VERSIONS
        customers.append(
            DemoCustomer(
                customer_id=f"cust_{suffix}",
                namespace=f"customer-{suffix}",
                release_name=f"customer-{suffix}",
                labels={"tier": TIERS[index % len(TIERS)], "region": REGIONS[index % len(REGIONS)]},
                versions=dict(versions),
            )
        )
    return customers


def customer_count(db: Database) -> int:
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM customers")
        row = cur.fetchone()
    return int(row["n"]) if row else 0


def seed_demo_customers(repo: UpgradeRepository, db: Database, count: int) -> list[DemoCustomer]:
    """Insert `count` demo customers when the inventory is empty; return those inserted ([] otherwise)."""
    if count <= 0 or customer_count(db) > 0:
        return []
    customers = demo_customers(count)
    for customer in customers:
        repo.upsert_customer(
            customer.customer_id,
            customer.namespace,
            customer.release_name,
            labels=customer.labels,
            versions=customer.versions,
        )
    _start_upgrade_ids_at(db, FIRST_UPGRADE_ID)
    return customers


def _start_upgrade_ids_at(db: Database, first: int) -> None:
    """On a database that never recorded an upgrade, make the first upgrade id `first`."""
    with db.transaction() as cur:
        cur.execute("SELECT is_called FROM system_upgrades_id_seq")
        row = cur.fetchone()
        if row is not None and not row["is_called"]:
            cur.execute("SELECT setval('system_upgrades_id_seq', %s, false)", (first,))


def release_values(customer: DemoCustomer) -> dict[str, str]:
    """The Helm values a demo customer's release was installed with (image tag per component)."""
    return {f"{component}.image.tag": customer.versions[component] for component in COMPONENTS}
