"""Demo customers for the local stack: created in the SIMULATED cluster, found by discovery.

Ids follow the specification's example (`cust_abc123`, namespace `customer-abc123`): the n demo
customers are cust_abc123, cust_abc124, ... so the spec's rollback example names a real customer.
Each gets a namespace and a Helm release of the same name, written in Helm's own storage format
(`SimulatedCluster.add_release`); the inventory then learns them the way it learns a real fleet, by a
sync at start-up (`upgrader.fleet.discovery`). A fresh database also starts upgrade ids at 123, so the
spec's curl examples (`/api/upgrades/123/...`) address the first upgrade deployed, exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb
from upgrader.infra.components import REGISTRY
from upgrader.infra.db import Database

FIRST_NUMBER = 123
FIRST_UPGRADE_ID = 123
TIERS = ("standard", "standard", "premium")
# Demo customers on the blue-green sample chart (docs/blue-green.md) carry this label, so a deploy can
# target them: {"labels": {"rollout": "blue-green"}, "blueGreen": true}.
BLUE_GREEN_LABEL = ("rollout", "blue-green")
BLUE_GREEN_CHART = "customer-stack-bluegreen"
REGIONS = ("eu-west-1", "us-east-1")
# The demo fleet's rings (docs/rings.md), by position: 5 staging, 5 internal, 10 early, the rest production.
RING_SHARES = (("staging", 5), ("internal", 5), ("early", 10))


def demo_ring(index: int) -> str:
    """The ring of the index-th demo customer: the first ones in the first rings, the rest in production."""
    for ring, size in RING_SHARES:
        if index < size:
            return ring
        index -= size
    return "production"


@dataclass(frozen=True)
class DemoCustomer:
    customer_id: str
    namespace: str
    release_name: str
    labels: dict[str, str]
    versions: dict[str, str]
    ring: str
    values: dict[str, str]  # the release's user values (dotted keys); the rest comes from the chart
    chart_name: str | None = None  # None: customer-stack; else e.g. the blue-green sample chart


def demo_customers(count: int, blue_green: int = 0) -> list[DemoCustomer]:
    """The demo fleet: ids cust_abc123.., one namespace and Helm release each; then `blue_green` more whose
    releases run the blue-green sample chart (each component's current version on its blue slot)."""
    customers = []
    for index in range(count):
        suffix = f"abc{FIRST_NUMBER + index}"
        lagging = index % 10 == 9
        # Every tenth customer lags one version behind (customer-stack 1.4.0's tags): real fleets are never uniform.
        versions = {spec.name: spec.sample.older_tag if lagging else spec.sample.newer_tag for spec in REGISTRY}
        # A component whose `tag_from_chart` is set keeps the chart's default tag in an up-to-date release:
        # discovery reads that version from the chart, as Helm would render it.
        values = {
            spec.image_tag_key: versions[spec.name] for spec in REGISTRY if lagging or not spec.sample.tag_from_chart
        }
        customers.append(
            DemoCustomer(
                customer_id=f"cust_{suffix}",
                namespace=f"customer-{suffix}",
                release_name=f"customer-{suffix}",
                labels={"tier": TIERS[index % len(TIERS)], "region": REGIONS[index % len(REGIONS)]},
                versions=versions,
                ring=demo_ring(index),
                values=values,
            )
        )
    for index in range(count, count + blue_green):
        suffix = f"abc{FIRST_NUMBER + index}"
        customers.append(
            DemoCustomer(
                customer_id=f"cust_{suffix}",
                namespace=f"customer-{suffix}",
                release_name=f"customer-{suffix}",
                labels={
                    "tier": TIERS[index % len(TIERS)],
                    "region": REGIONS[index % len(REGIONS)],
                    BLUE_GREEN_LABEL[0]: BLUE_GREEN_LABEL[1],
                },  # fmt: skip
                versions={spec.name: spec.sample.newer_tag for spec in REGISTRY},
                ring="production",
                values={f"{spec.name}.slots.blue.tag": spec.sample.newer_tag for spec in REGISTRY},
                chart_name=BLUE_GREEN_CHART,
            )
        )
    return customers


def demo_releases(
    customers: list[DemoCustomer], chart_version: str
) -> list[tuple[str, str, dict[str, str], str | None, str | None]]:
    """Each demo customer's release: (namespace, release, values, chart version, chart name)."""
    return [
        (c.namespace, c.release_name, dict(c.values), chart_version if c.chart_name is None else None, c.chart_name)
        for c in customers
    ]


def install_demo_releases(cluster: Any, customers: list[DemoCustomer], chart_version: str) -> None:
    """Each demo customer's namespace and Helm release, in the simulated cluster."""
    for namespace, release, values, version, chart_name in demo_releases(customers, chart_version):
        cluster.add_release(namespace, release, values=values, chart_version=version, chart_name=chart_name)


def customer_count(db: Database) -> int:
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM customers")
        row = cur.fetchone()
    return int(row["n"]) if row else 0


def label_demo_customers(db: Database, customers: list[DemoCustomer]) -> None:
    """The demo labels (tier, region) and rings, as an operator would set them once the customers are known."""
    with db.transaction() as cur:
        cur.executemany(
            "UPDATE customers SET labels = labels || %s, ring = %s WHERE id = %s",
            [(Jsonb(c.labels), c.ring, c.customer_id) for c in customers],
        )


def start_upgrade_ids_at(db: Database, first: int = FIRST_UPGRADE_ID) -> None:
    """On a database that never recorded an upgrade, make the first upgrade id `first`."""
    with db.transaction() as cur:
        cur.execute("SELECT is_called FROM system_upgrades_id_seq")
        row = cur.fetchone()
        if row is not None and not row["is_called"]:
            cur.execute("SELECT setval('system_upgrades_id_seq', %s, false)", (first,))
