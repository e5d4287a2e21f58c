"""Discovery over a simulated cluster of 1,000 customer namespaces: the official client over HTTP, Helm's
real release encoding, the real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from upgrader import factory
from upgrader.cluster import discovery as adapter
from upgrader.cluster.discovery import KubernetesFleetReader
from upgrader.cluster.types import ClusterConfig
from upgrader.fleet import discovery
from upgrader.fleet.discovery import SyncFailed
from upgrader.fleet.discovery_rules import DiscoveryRules
from upgrader.fleet.ring_labels import RingLabelRule

from tests.api.helpers import call
from upgradectl.local.cluster import SimulatedCluster

CURRENT = {"api": "v1.1.0", "dashboard": "v1.9.0", "exporter": "v1.0.0", "mosquitto": "2.0.18"}  # chart 1.5.0's
LAGGING = {"api": "v1.0.3", "dashboard": "v1.8.2", "exporter": "v0.9.1", "mosquitto": "2.0.15"}  # chart 1.4.0's
FLEET = 1000
BROKEN = "customer-0500"
NOT_CUSTOMERS = ("kube-system", "default", "team-tools")


def _tags(versions: dict[str, str], *components: str) -> dict[str, str]:
    return {f"{c}.image.tag": versions[c] for c in components}


def fleet_spec(n: int) -> tuple[str, dict[str, str], dict[str, str]]:
    """(chart version, the release's values, the versions it runs) of customer n."""
    if n % 10 == 9:  # lagging: every tag in the values
        return "1.5.0", _tags(LAGGING, *LAGGING), dict(LAGGING)
    if n % 10 == 4:  # the older chart, only api set: the rest from chart 1.4.0's defaults
        return "1.4.0", {"api.image.tag": "v1.1.0"}, {**LAGGING, "api": "v1.1.0"}
    # mosquitto left to chart 1.5.0's defaults
    return "1.5.0", _tags(CURRENT, "api", "dashboard", "exporter"), dict(CURRENT)


@pytest.fixture(scope="module")
def fleet() -> Iterator[SimulatedCluster]:
    with SimulatedCluster() as cluster:
        for n in range(FLEET):
            chart, values, _ = fleet_spec(n)
            cluster.add_release(f"customer-{n:04d}", f"customer-{n:04d}", values=values, chart_version=chart)
        cluster.corrupt_release_secret(BROKEN, BROKEN)
        cluster.add_namespace("customer-empty")
        for name in NOT_CUSTOMERS:
            cluster.add_namespace(name)
        yield cluster


def sync(
    cluster: SimulatedCluster, rules: DiscoveryRules | None = None, rings: RingLabelRule | None = None
) -> dict[str, Any]:
    """One sync as the sync function runs it, reading the cluster over HTTP."""
    syncs = factory.syncs()
    row, created = syncs.request("test", "test", running=True)
    assert created
    api_client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))
    config = ClusterConfig(mode="url", api_url=cluster.url)
    finished = discovery.execute_sync(
        row.id,
        reader=lambda: KubernetesFleetReader(api_client, config),
        store=syncs,
        rules=rules or DiscoveryRules(),
        rings=rings,
        concurrency=8,
    )
    return finished.model_dump(by_alias=False)


def inventory(sql: Any) -> dict[str, dict[str, str]]:
    rows = sql("SELECT customer_id, component, version FROM customer_component_versions ORDER BY 1, 2")
    found: dict[str, dict[str, str]] = {}
    for r in rows:
        found.setdefault(r["customer_id"], {})[r["component"]] = r["version"]
    return found


def test_discovery_of_1000_namespaces(env, fleet, sql, monkeypatch, capsys):
    decodes: list[int] = []
    real_decode = adapter.decode_release_data

    def counting(data: str) -> dict:
        decodes.append(1)
        return real_decode(data)

    monkeypatch.setattr(adapter, "decode_release_data", counting)

    # When the first sync reads the fleet
    began = time.monotonic()
    first = sync(fleet)
    seconds = time.monotonic() - began
    counts = first["counts"]

    # Then every customer namespace with a readable release is a customer, with its id from the rule
    assert first["status"] == "completed", first["error"]
    expected = {f"cust_{n:04d}": fleet_spec(n)[2] for n in range(FLEET) if f"customer-{n:04d}" != BROKEN}
    rows = sql("SELECT id, namespace, release_name, status, chart_version, release_revision FROM customers ORDER BY id")
    assert [r["id"] for r in rows] == sorted(expected)
    assert {(r["namespace"], r["release_name"], r["status"]) for r in rows} == {
        (f"customer-{cid[5:]}", f"customer-{cid[5:]}", "active") for cid in expected
    }
    # with each component's version read from the release: its values, else the chart's defaults
    assert inventory(sql) == expected
    assert {r["chart_version"] for r in rows if r["id"] == "cust_0004"} == {"1.4.0"}
    # the broken release Secret and the namespace without a release are reported, not a crash
    problems = {p["namespace"]: p["message"] for p in first["problems"]}
    assert "is unreadable" in problems[BROKEN]
    assert "holds no Helm release" in problems["customer-empty"]
    assert not set(NOT_CUSTOMERS) & set(problems)
    # every namespace of the cluster was read: the fleet, the three others, an empty one, upgrade-system
    assert counts == {**counts, "namespaces": FLEET + 5, "matched": FLEET + 1, "added": FLEET - 1, "customers": FLEET - 1,
                      "problems": 2, "withoutRelease": 1, "drifted": 0, "decommissioned": 0}  # fmt: skip
    # in a bounded number of requests: namespace pages of 500, one Secret list per namespace (a second only
    # where nothing is deployed), and one decode per release
    assert counts["requests"] == 3 + (FLEET + 1) + 1
    assert len(decodes) == FLEET
    print(f"\ndiscovery of {FLEET} namespaces: {seconds:.1f} s, {counts['requests']} requests, {len(decodes)} decodes")

    # Given the cluster changes behind the inventory's back
    fleet.remove_namespace("customer-0007")  # a customer leaves
    fleet.remove_namespace("customer-0011")  # its release uninstalled, the namespace kept
    fleet.add_namespace("customer-0011")
    fleet.add_release(BROKEN, BROKEN, values=_tags(CURRENT, *CURRENT))  # repaired
    fleet.add_release(
        "customer-0003", "customer-0003", revision=3, values=_tags({**CURRENT, "api": "v9.9.9"}, *CURRENT)
    )
    fleet.add_release(
        "customer-0014", "customer-0014", revision=2, chart_version="1.5.0", values={"api.image.tag": "v1.1.0"}
    )
    # When the next sync runs
    second = sync(fleet)["counts"]
    # Then the gone customers are decommissioned, never deleted, their history kept
    assert second == {**second, "decommissioned": 2, "added": 1, "drifted": 2, "problems": 1}  # customer-empty
    gone = sql("SELECT id, status, decommissioned_at FROM customers WHERE id IN ('cust_0007', 'cust_0011') ORDER BY id")
    assert [(r["id"], r["status"]) for r in gone] == [("cust_0007", "decommissioned"), ("cust_0011", "decommissioned")]
    assert all(r["decommissioned_at"] for r in gone)
    kinds = [r["kind"] for r in sql("SELECT kind FROM customer_events WHERE customer_id = 'cust_0007' ORDER BY id")]
    assert kinds == ["discovered", "decommissioned"]
    assert inventory(sql)["cust_0007"] == expected["cust_0007"]
    # and drift is found, with both values, from the values (0003) and from new chart defaults (0014)
    drift = {r["id"]: r["drift"] for r in sql("SELECT id, drift FROM customers WHERE drift IS NOT NULL ORDER BY id")}
    assert set(drift) == {"cust_0003", "cust_0014"}
    assert {k: v for k, v in drift["cust_0003"]["api"].items() if k != "detectedAt"} == {
        "recorded": "v1.1.0", "release": "v9.9.9"
    }  # fmt: skip
    assert set(drift["cust_0014"]) == {"dashboard", "exporter", "mosquitto"}  # 1.4.0's defaults -> 1.5.0's
    assert inventory(sql)["cust_0003"]["api"] == "v9.9.9"  # the inventory follows what runs

    # and shown: the customers API filters on it, the customer shows both values and the event
    code, listed = call("api_customers", "api_customers_list", "/api/customers", {}, {"drift": "true"})
    assert code == 200 and [c["customerId"] for c in listed["customers"]] == ["cust_0003", "cust_0014"]
    code, shown = call("api_customers", "api_customers_get", "/api/customers/cust_0003", {"customerId": "cust_0003"})
    assert code == 200
    assert (shown["drift"]["api"]["recorded"], shown["drift"]["api"]["release"]) == ("v1.1.0", "v9.9.9")
    assert [e["kind"] for e in shown["history"]] == ["drift", "discovered"]
    assert shown["history"][0]["detail"]["components"]["api"] == {"recorded": "v1.1.0", "release": "v9.9.9"}
    # and the fleet counts what the releases hold now
    code, spread = call("api_customers", "api_customers_fleet", "/api/fleet", {})
    api = {v["version"]: v["customers"] for v in spread["components"][0]["versions"]}
    assert (code, spread["customers"], spread["drift"]) == (200, FLEET - 2, 2)
    assert api == {"v1.1.0": 897, "v1.0.3": 100, "v9.9.9": 1}

    # When the customer that left comes back, it is active again
    fleet.add_release("customer-0007", "customer-0007", values=_tags(CURRENT, *CURRENT))
    third = sync(fleet)["counts"]
    assert third == {**third, "reappeared": 1, "decommissioned": 0, "drifted": 0}
    assert sql("SELECT status FROM customers WHERE id = 'cust_0007'")[0]["status"] == "active"


@pytest.fixture
def small_fleet() -> Iterator[SimulatedCluster]:
    with SimulatedCluster() as cluster:
        for n in range(3):
            cluster.add_release(f"customer-{n:04d}", f"customer-{n:04d}", values=_tags(CURRENT, *CURRENT))
        yield cluster


def test_a_sync_that_cannot_list_namespaces_fails_and_decommissions_nobody(env, small_fleet, sql):
    assert sync(small_fleet)["counts"]["added"] == 3
    small_fleet.fail_next(1, status=500, path_contains="/api/v1/namespaces")
    with pytest.raises(SyncFailed, match="list namespaces"):
        sync(small_fleet)
    failed = sql("SELECT status, error FROM inventory_syncs ORDER BY id DESC LIMIT 1")[0]
    assert failed["status"] == "failed" and "list namespaces" in failed["error"]
    assert {r["status"] for r in sql("SELECT status FROM customers")} == {"active"}


def test_a_pattern_that_finds_nothing_decommissions_nobody(env, small_fleet, sql):
    sync(small_fleet)
    with pytest.raises(SyncFailed, match="no namespace matches 'tenant-\\*'"):
        sync(small_fleet, DiscoveryRules(namespace_pattern="tenant-*"))
    assert {r["status"] for r in sql("SELECT status FROM customers")} == {"active"}


def test_a_customer_our_own_helm_operation_holds_is_left_to_that_operation(
    env, small_fleet, sql, fake_workflow, monkeypatch
):
    from tests.api.helpers import deploy

    # the simulated releases name registry.example.com images, which no registry here holds: no pre-flight
    monkeypatch.setenv("IMAGE_PREFLIGHT", "off")
    factory.reset()
    # Given the inventory in line with the cluster, and an upgrade whose helm Job holds cust_0001's release
    sync(small_fleet)
    upgrade = deploy(component="api", version="v1.2.0")["upgradeId"]
    row = sql("SELECT id, run_name FROM customer_upgrade_logs WHERE customer_id = 'cust_0001'")[0]
    sql("INSERT INTO customer_leases (customer_id, log_id, upgrade_id, run_name, operation, component)"
        " VALUES ('cust_0001', %s, %s, %s, 'upgrade', 'api')", row["id"], int(upgrade), row["run_name"])  # fmt: skip
    # When helm has changed its release but not yet recorded it, and a sync reads it
    small_fleet.add_release(
        "customer-0001", "customer-0001", revision=2, values=_tags({**CURRENT, "api": "v1.2.0"}, *CURRENT)
    )
    counts = sync(small_fleet)["counts"]
    # Then the sync leaves that customer to the operation: no drift, no version written
    assert (counts["busy"], counts["drifted"]) == (1, 0)
    assert inventory(sql)["cust_0001"]["api"] == "v1.1.0"
    assert sql("SELECT drift FROM customers WHERE id = 'cust_0001'")[0]["drift"] is None


def test_a_release_with_a_bad_image_tag_is_that_namespaces_problem_never_the_syncs(env, small_fleet, sql):
    """Issue 29 item 5: a tag of 201 characters failed every sync (StringDataRightTruncation on
    varchar(128)), so nobody was added or checked after it; hostile tags that fit were stored as they were.

    Breakage tried: observe() without the invalid_release_data check: the sync fails with
    StringDataRightTruncation, and (with the long tag removed) `<!channel>` is stored in the inventory."""
    # Given one new namespace whose api tag is 201 characters, one whose tag is markup, and a known
    # customer whose release changes to a bad tag
    assert sync(small_fleet)["counts"]["added"] == 3
    small_fleet.add_release(
        "customer-long", "customer-long", values=_tags({**CURRENT, "api": "v" + "9" * 200}, *CURRENT)
    )
    small_fleet.add_release("customer-markup", "customer-markup",
                            values=_tags({**CURRENT, "dashboard": "<!channel>"}, *CURRENT))  # fmt: skip
    small_fleet.add_release("customer-new", "customer-new", values=_tags(CURRENT, *CURRENT))
    small_fleet.add_release("customer-0001", "customer-0001", values=_tags({**CURRENT, "exporter": "v 2"}, *CURRENT))

    # When the inventory is synced
    finished = sync(small_fleet)

    # Then the sync completes: the good namespace is added, each bad one is reported with a bounded quote
    assert finished["status"] == "completed"
    counts = finished["counts"]
    assert (counts["added"], counts["unreadable"], counts["problems"]) == (1, 1, 3)
    problems = {p["namespace"]: p["message"] for p in finished["problems"]}
    assert "component api's image tag 'v99999999" in problems["customer-long"]
    assert "(201 characters)" in problems["customer-long"] and "9" * 60 not in problems["customer-long"]
    assert "component dashboard's image tag '<!channel>' is not a valid version" in problems["customer-markup"]
    assert "component exporter's image tag 'v 2'" in problems["customer-0001"]
    # nothing of the bad releases reached the inventory; the known customer keeps its versions, marked
    assert {r["id"] for r in sql("SELECT id FROM customers")} == {"cust_0000", "cust_0001", "cust_0002", "cust_new"}
    assert inventory(sql)["cust_0001"] == CURRENT
    (known,) = sql("SELECT status, release_error FROM customers WHERE id = 'cust_0001'")
    assert known["status"] == "active" and "'v 2' is not a valid version" in known["release_error"]
    assert not sql("SELECT 1 FROM customer_component_versions WHERE version !~ '^[A-Za-z0-9_][A-Za-z0-9._-]*$'")


def test_a_sync_reads_each_customers_ring_from_its_namespace_label_and_the_label_wins(env, small_fleet, sql):
    # Given a namespace labelled ring=staging, one labelled with a ring the order lacks, one without a label
    small_fleet.add_namespace("customer-0000", {"ring": "staging"})
    small_fleet.add_namespace("customer-0001", {"ring": "qa"})
    rings = RingLabelRule()
    # When a sync runs with the ring rule
    found = sync(small_fleet, rings=rings)
    # Then the labelled customer is in its ring, set by the label; the unknown ring is the sync's problem
    assert found["counts"]["added"] == 3
    stored = {
        r["id"]: (r["ring"], r["ring_from_label"]) for r in sql("SELECT id, ring, ring_from_label FROM customers")
    }
    assert stored == {"cust_0000": ("staging", True), "cust_0001": (None, False), "cust_0002": (None, False)}
    assert [p["namespace"] for p in found["problems"]] == ["customer-0001"]
    assert "'qa', which is not a ring" in found["problems"][0]["message"]
    # and a ring set through the API (no label) stays at the next sync, while a changed label moves its customer
    sql("UPDATE customers SET ring = 'early' WHERE id = 'cust_0002'")
    small_fleet.add_namespace("customer-0000", {"ring": "internal"})
    sync(small_fleet, rings=rings)
    stored = {
        r["id"]: (r["ring"], r["ring_from_label"]) for r in sql("SELECT id, ring, ring_from_label FROM customers")
    }
    assert stored == {"cust_0000": ("internal", True), "cust_0001": (None, False), "cust_0002": ("early", False)}
    events = sql("SELECT detail FROM customer_events WHERE customer_id = 'cust_0000' AND kind = 'ring' ORDER BY id")
    assert [(e["detail"]["before"], e["detail"]["after"]) for e in events] == [
        (None, "staging"),
        ("staging", "internal"),
    ]
    # and once the label is gone, the customer returns to the default ring (its ring came from the label)
    small_fleet.add_namespace("customer-0000", {"ring": None})  # type: ignore[dict-item]
    sync(small_fleet, rings=rings)
    assert sql("SELECT ring, ring_from_label FROM customers WHERE id = 'cust_0000'") == [
        {"ring": None, "ring_from_label": False}
    ]


def repositories(sql: Any) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for row in sql("SELECT customer_id, component, repository FROM customer_image_repositories ORDER BY 1, 2"):
        found.setdefault(row["customer_id"], {})[row["component"]] = row["repository"]
    return found


def test_a_sync_records_each_components_image_repository_beside_its_tag(env, small_fleet, sql):
    """The images' pre-flight asks the registry for the repository a release names beside each tag (docs/images.md).

    Breakage tried: _write_repositories not called from _write (this test: nothing recorded); the repository read
    at the tag key itself instead of its sibling (this test: the tags recorded as repositories)."""
    # Given releases naming the chart's repositories, and one whose values name its own api repository
    small_fleet.add_release("customer-0001", "customer-0001",
                            values={**_tags(CURRENT, *CURRENT), "api.image.repository": "registry.example.com/team/api"})  # fmt: skip

    # When the inventory is synced
    sync(small_fleet)

    # Then every customer's repository per component is recorded: the values' first, else the chart's
    found = repositories(sql)
    assert found["cust_0000"] == {c: f"registry.example.com/{c}" for c in CURRENT}
    assert found["cust_0001"]["api"] == "registry.example.com/team/api"
    assert found["cust_0001"]["dashboard"] == "registry.example.com/dashboard"

    # and a release that names another repository later is recorded again
    small_fleet.add_release("customer-0001", "customer-0001", values=_tags(CURRENT, *CURRENT))
    sync(small_fleet)
    assert repositories(sql)["cust_0001"]["api"] == "registry.example.com/api"


def test_a_release_naming_no_usable_repository_is_that_namespaces_problem(env, small_fleet, sql):
    """Breakage tried: the repository check removed from invalid_release_data (this test: the sync fails on the
    VARCHAR(255) of a 300-character repository, and `Registry/API:v1` is recorded)."""
    small_fleet.add_release("customer-0001", "customer-0001",
                            values={**_tags(CURRENT, *CURRENT), "api.image.repository": "Registry/API:v1"})  # fmt: skip
    small_fleet.add_release("customer-0002", "customer-0002",
                            values={**_tags(CURRENT, *CURRENT), "api.image.repository": "r.example/" + "a" * 300})  # fmt: skip

    finished = sync(small_fleet)

    assert finished["status"] == "completed"
    problems = {p["namespace"]: p["message"] for p in finished["problems"]}
    assert "component api's image repository 'Registry/API:v1' is not an image repository" in problems["customer-0001"]
    assert "(310 characters)" in problems["customer-0002"]
    assert set(repositories(sql)) == {"cust_0000"}


def test_a_sync_records_the_digest_a_release_pins_with_the_version_it_runs(env, small_fleet, sql):
    """The pre-flight's rollback image is exact when the release pins a digest (docs/images.md): its digest value
    (form 2) or its tag value's (form 1), offered to a deploy only while the inventory holds the version it was read
    with."""
    apart, pinned = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    # Given a release with the digest apart, one with a pinned tag value, and one whose digest value is garbage
    small_fleet.add_release("customer-0000", "customer-0000",
                            values={**_tags(CURRENT, *CURRENT), "api.image.digest": apart})  # fmt: skip
    small_fleet.add_release("customer-0001", "customer-0001",
                            values={**_tags(CURRENT, *CURRENT), "api.image.tag": f"v1.1.0@{pinned}"})  # fmt: skip
    small_fleet.add_release("customer-0002", "customer-0002",
                            values={**_tags(CURRENT, *CURRENT), "api.image.digest": "sha256:nothex"})  # fmt: skip

    # When the inventory is synced
    sync(small_fleet)

    # Then each pinned digest is recorded with the version it runs, and the deploy's candidates carry it
    rows = sql("SELECT customer_id, digest, digest_version FROM customer_image_repositories WHERE component = 'api' "
               "ORDER BY 1")  # fmt: skip
    assert [(r["customer_id"], r["digest"], r["digest_version"]) for r in rows] == [
        ("cust_0000", apart, "v1.1.0"), ("cust_0001", pinned, "v1.1.0"), ("cust_0002", None, None)
    ]  # fmt: skip
    candidates = {c.customer_id: c.image_digests for c in factory.inventory().deploy_candidates("api")}
    assert candidates == {"cust_0000": {"api": apart}, "cust_0001": {"api": pinned}, "cust_0002": {}}

    # and once the inventory holds another version (a deploy changed it), the digest read with the old one is not used
    sql(
        "UPDATE customer_component_versions SET version = 'v1.2.0' WHERE customer_id = 'cust_0000' AND component = 'api'"
    )
    assert {c.customer_id: c.image_digests for c in factory.inventory().deploy_candidates("api")}["cust_0000"] == {}
