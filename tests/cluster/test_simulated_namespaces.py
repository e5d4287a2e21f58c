"""The simulated API server serves namespaces as Kubernetes does: chunked lists, GET, and removal."""

from __future__ import annotations

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from upgradectl.local.cluster import SimulatedCluster


@pytest.fixture
def core(cluster: SimulatedCluster):
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        yield kubernetes.client.CoreV1Api(api_client)


def test_a_chunked_list_carries_continue_and_remaining_count(cluster, core):
    for name in ("b", "a", "c", "d"):
        cluster.add_namespace(f"ns-{name}")
    # (the cluster also has upgrade-system, where the helm Jobs run: it sorts after the ns-*)
    first = core.list_namespace(limit=3)
    assert [n.metadata.name for n in first.items] == ["ns-a", "ns-b", "ns-c"]
    assert first.metadata.remaining_item_count == 2 and first.metadata._continue
    rest = core.list_namespace(limit=3, _continue=first.metadata._continue)
    assert [n.metadata.name for n in rest.items] == ["ns-d", "upgrade-system"] and not rest.metadata._continue
    assert [n.metadata.name for n in core.list_namespace().items] == ["ns-a", "ns-b", "ns-c", "ns-d",
                                                                      "upgrade-system"]  # fmt: skip


def test_a_bad_continue_token_is_a_400(core):
    with pytest.raises(ApiException) as refused:
        core.list_namespace(limit=1, _continue="not-a-token")
    assert refused.value.status == 400


def test_get_one_namespace_and_404(cluster, core):
    cluster.add_namespace("ns-a", {"team": "blue"})
    assert core.read_namespace("ns-a").metadata.labels["team"] == "blue"
    with pytest.raises(ApiException) as missing:
        core.read_namespace("ns-zz")
    assert missing.value.status == 404


def test_a_release_makes_its_namespace_and_removing_it_removes_the_release(cluster, core):
    cluster.add_release("customer-a", "customer-a")
    assert "customer-a" in cluster.namespaces()
    assert core.list_namespaced_secret("customer-a", label_selector="owner=helm").items
    cluster.remove_namespace("customer-a")
    assert "customer-a" not in cluster.namespaces()
    assert core.list_namespaced_secret("customer-a", label_selector="owner=helm").items == []
    assert cluster.release_history("customer-a", "customer-a") == []
