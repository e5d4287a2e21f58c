"""The fleet reader (discovery's Kubernetes adapter) with the official client over HTTP to the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest
from upgrader.cluster import discovery as adapter
from upgrader.cluster.discovery import KubernetesFleetReader
from upgrader.cluster.types import ClusterConfig, ReleaseUnreadable

from upgradectl.local.cluster import SimulatedCluster


@pytest.fixture
def reader(cluster: SimulatedCluster) -> Iterator[KubernetesFleetReader]:
    configuration = kubernetes.client.Configuration(host=cluster.url)
    configuration.retries = 0
    with kubernetes.client.ApiClient(configuration) as api_client:
        yield KubernetesFleetReader(api_client, ClusterConfig(mode="url", api_url=cluster.url))


def test_namespaces_come_page_by_page_from_a_server_that_paginates(cluster, reader, monkeypatch):
    # Given 10 namespaces and pages of 3 (the server answers continue tokens)
    for n in range(10):
        cluster.add_namespace(f"customer-{n:02d}", {"team": "blue" if n % 2 else "red"})
    monkeypatch.setattr(adapter, "PAGE_SIZE", 3)
    # When the reader lists them, then every namespace comes once, in name order, in 4 requests (the 10
    # and the cluster's own upgrade-system, where the helm Jobs run)
    names = [ns.name for ns in reader.namespaces()]
    assert names == [f"customer-{n:02d}" for n in range(10)] + ["upgrade-system"]
    assert reader.requests == 4
    # and a label selector narrows the list on the server
    blue = [ns.name for ns in reader.namespaces("team=blue")]
    assert blue == [f"customer-{n:02d}" for n in range(1, 10, 2)]


def test_a_server_that_answers_everything_at_once_is_read_in_one_request(cluster, reader):
    # The simulated server does not chunk Secret lists: one answer, no continue token
    cluster.add_release("customer-a", "customer-a", revision=12, values={"api.image.tag": "v2"})
    snapshot = reader.release_in("customer-a", "customer-a")
    assert snapshot is not None and snapshot.revision == 12 and reader.requests == 1


def test_versions_come_from_the_values_else_from_the_charts_defaults(cluster, reader):
    # chart 1.4.0's defaults: api v1.0.3, dashboard v1.8.2, exporter v0.9.1, mosquitto 2.0.15
    cluster.add_release("customer-a", "customer-a", chart_version="1.4.0",
                        values={"api": {"image": {"tag": "v1.2.0"}}, "exporter.image.tag": "v1.0.0"})  # fmt: skip
    snapshot = reader.release_in("customer-a", "customer-a")
    assert snapshot is not None
    assert snapshot.versions == {"api": "v1.2.0", "dashboard": "v1.8.2", "exporter": "v1.0.0", "mosquitto": "2.0.15"}
    assert snapshot.sources == {"api": "values", "dashboard": "chart-defaults", "exporter": "values",
                                "mosquitto": "chart-defaults"}  # fmt: skip
    assert (snapshot.chart_name, snapshot.chart_version, snapshot.status) == ("customer-stack", "1.4.0", "deployed")


def test_configured_value_keys_are_read(cluster):
    cluster.add_release("customer-a", "customer-a", values={"images.api": "v7"})
    config = ClusterConfig(mode="url", api_url=cluster.url, image_tag_keys={"api": "images.api"})
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        snapshot = KubernetesFleetReader(api_client, config).release_in("customer-a", "customer-a")
    assert snapshot is not None and snapshot.versions["api"] == "v7" and snapshot.sources["api"] == "values"


@pytest.mark.parametrize("status", ["failed", "pending-upgrade"])
def test_what_runs_is_the_last_deployed_revision_not_a_newer_failed_or_pending_one(cluster, reader, status):
    cluster.add_release("customer-a", "customer-a", revision=3, status=status, values={"api.image.tag": "v1"})
    snapshot = reader.release_in("customer-a", "customer-a")
    assert snapshot is not None and (snapshot.revision, snapshot.status) == (2, "deployed")


def test_a_broken_release_secret_is_reported_not_a_crash(cluster, reader):
    cluster.add_release("customer-a", "customer-a", values={"api.image.tag": "v1"})
    cluster.corrupt_release_secret("customer-a", "customer-a")
    with pytest.raises(ReleaseUnreadable, match=r"sh\.helm\.release\.v1\.customer-a\.v1 in customer-a is unreadable"):
        reader.release_in("customer-a", "customer-a")


def test_a_namespace_without_a_release_has_none(cluster, reader):
    cluster.add_namespace("customer-empty")
    assert reader.release_in("customer-empty", "customer-empty") is None
    assert reader.requests == 2  # deployed revisions, then any revision


def test_a_release_that_never_deployed_is_reported(cluster, reader):
    cluster.add_release("customer-a", "customer-a", status="failed")
    with pytest.raises(ReleaseUnreadable, match="no deployed revision"):
        reader.release_in("customer-a", "customer-a")


def test_with_several_releases_the_one_named_by_the_rule_is_the_customers(cluster, reader):
    cluster.add_release("customer-a", "customer-a", values={"api.image.tag": "v1"})
    cluster.add_release("customer-a", "sidecar", values={"api.image.tag": "v9"})
    snapshot = reader.release_in("customer-a", "customer-a")
    assert snapshot is not None and (snapshot.name, snapshot.versions["api"]) == ("customer-a", "v1")
    with pytest.raises(ReleaseUnreadable, match="2 Helm releases in customer-a"):
        reader.release_in("customer-a", "stack")
    # a single release is the customer's whatever its name
    cluster.add_release("customer-b", "stack", values={"api.image.tag": "v3"})
    only = reader.release_in("customer-b", "customer-b")
    assert only is not None and only.name == "stack"


def test_one_decode_per_release(cluster, reader, monkeypatch):
    cluster.add_release("customer-a", "customer-a", revision=8, values={"api.image.tag": "v1"})
    decoded: list[str] = []
    real = adapter.decode_release_data

    def counting(data: str) -> dict:
        decoded.append(data)
        return real(data)

    monkeypatch.setattr(adapter, "decode_release_data", counting)
    reader.release_in("customer-a", "customer-a")
    assert len(decoded) == 1
