# mypy: disable-error-code="arg-type,union-attr,operator,func-returns-value"
# (raw dict bodies and the client's Optional model fields, as a test of the API server reads them)
"""The simulated API server as a Kubernetes API: selectors, pagination, resourceVersion, errors, watch,
and what a request costs (objects examined, not time)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.cluster.conftest import wait_until
from upgradectl.local.cluster import SimulatedCluster


@pytest.fixture
def core(cluster: SimulatedCluster) -> Iterator[kubernetes.client.CoreV1Api]:
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        yield kubernetes.client.CoreV1Api(api_client)


def secret(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {}}


def names(listing: Any) -> list[str]:
    return [item.metadata.name for item in listing.items]


def test_label_selectors_equality_set_based_and_existence(core: kubernetes.client.CoreV1Api) -> None:
    for name, labels in {"a": {"tier": "web", "env": "prod"}, "b": {"tier": "db", "env": "prod"},
                         "c": {"tier": "cache"}, "d": {}}.items():  # fmt: skip
        core.create_namespaced_secret("sel", secret(name, **labels))
    cases = {
        "tier=web": ["a"], "tier==db": ["b"], "tier!=web": ["b", "c", "d"], "tier in (web,db)": ["a", "b"],
        "tier notin (web,db)": ["c", "d"], "env": ["a", "b"], "!env": ["c", "d"], "env=prod,tier in (db,cache)": ["b"],
        "tier in (web, cache),!env": ["c"],
    }  # fmt: skip
    for selector, expected in cases.items():
        assert names(core.list_namespaced_secret("sel", label_selector=selector)) == expected, selector


def test_an_invalid_selector_is_a_400(core: kubernetes.client.CoreV1Api) -> None:
    for bad in ("tier in (web", "Bad Key=x", "tier=in valid"):
        with pytest.raises(ApiException) as caught:
            core.list_namespaced_secret("sel", label_selector=bad)
        assert caught.value.status == 400, bad
    with pytest.raises(ApiException) as unsupported:
        core.list_namespaced_secret("sel", field_selector="spec.color=red")
    assert unsupported.value.status == 400 and "field label not supported: spec.color" in unsupported.value.body


def test_field_selectors_on_name_and_namespace(core: kubernetes.client.CoreV1Api) -> None:
    for namespace in ("f1", "f2"):
        for name in ("x", "y"):
            core.create_namespaced_secret(namespace, secret(name))
    everywhere = core.list_secret_for_all_namespaces(field_selector="metadata.name=x")
    assert [(s.metadata.namespace, s.metadata.name) for s in everywhere.items] == [("f1", "x"), ("f2", "x")]
    assert names(core.list_namespaced_secret("f2", field_selector="metadata.name!=x")) == ["y"]
    only = core.list_secret_for_all_namespaces(field_selector="metadata.namespace=f2,metadata.name=y")
    assert [(s.metadata.namespace, s.metadata.name) for s in only.items] == [("f2", "y")]


def test_pagination_returns_everything_once_in_key_order(cluster: SimulatedCluster) -> None:
    for i in range(23):
        cluster.onboard(f"customer-{i:03d}")
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        core = kubernetes.client.CoreV1Api(api_client)
        seen: list[str] = []
        remaining: list[int | None] = []
        token = None
        while True:
            page = core.list_namespace(limit=5, _continue=token, label_selector=None)
            seen += names(page)
            remaining.append(page.metadata.remaining_item_count)
            token = page.metadata._continue
            if not token:
                break
    expected = sorted([f"customer-{i:03d}" for i in range(23)] + ["upgrade-system"])
    assert seen == expected
    assert remaining == [19, 14, 9, 4, None]  # told while there is more, as the API server does


def test_pagination_with_a_selector_and_across_namespaces(core: kubernetes.client.CoreV1Api) -> None:
    for namespace in ("p1", "p2", "p3"):
        for i in range(4):
            core.create_namespaced_secret(namespace, secret(f"s{i}", owner="helm" if i % 2 else "other"))
    seen, token = [], None
    while True:
        page = core.list_secret_for_all_namespaces(label_selector="owner=helm", limit=2, _continue=token)
        assert page.metadata.remaining_item_count is None  # unknown with a selector
        seen += [(s.metadata.namespace, s.metadata.name) for s in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [(ns, name) for ns in ("p1", "p2", "p3") for name in ("s1", "s3")]
    with pytest.raises(ApiException) as caught:
        core.list_secret_for_all_namespaces(limit=2, _continue="not-a-token")
    assert caught.value.status == 400 and "continue key is not valid" in caught.value.body


def test_resource_version_moves_on_every_write_and_guards_updates(core: kubernetes.client.CoreV1Api) -> None:
    created = core.create_namespaced_secret("rv", secret("s", a="1"))
    patched = core.patch_namespaced_secret("s", "rv", {"metadata": {"labels": {"a": "2"}}})
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    assert patched.metadata.uid == created.metadata.uid
    listing = core.list_namespaced_secret("rv")
    assert int(listing.metadata.resource_version) >= int(patched.metadata.resource_version)
    stale = core.read_namespaced_secret("s", "rv")
    stale.metadata.resource_version = created.metadata.resource_version
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_secret("s", "rv", stale)
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["message"] == (
        'Operation cannot be fulfilled on secrets "s": the object has been modified; please apply your changes to '
        "the latest version and try again"
    )
    assert core.read_namespaced_secret("s", "rv").metadata.labels == {"a": "2"}  # the stale write changed nothing


def test_not_found_and_already_exists_are_the_api_servers_status(cluster: SimulatedCluster) -> None:
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        batch = kubernetes.client.BatchV1Api(api_client)
        with pytest.raises(ApiException) as missing:
            batch.read_namespaced_job("nope", "upgrade-system")
        job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
        batch.create_namespaced_job("upgrade-system", job)
        with pytest.raises(ApiException) as twice:
            batch.create_namespaced_job("upgrade-system", job)
    body = json.loads(missing.value.body)
    assert (missing.value.status, body["reason"], body["message"]) == (404, "NotFound", 'jobs.batch "nope" not found')
    assert body["details"] == {"name": "nope", "group": "batch", "kind": "jobs"}
    again = json.loads(twice.value.body)
    assert (twice.value.status, again["reason"], again["message"]) == (
        409, "AlreadyExists", 'jobs.batch "j" already exists')  # fmt: skip


def test_watch_streams_changes_of_its_selection_and_resumes(cluster: SimulatedCluster) -> None:
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        core = kubernetes.client.CoreV1Api(api_client)
        core.create_namespaced_secret("w", secret("before", app="x"))
        events: list[tuple[str, str]] = []
        started = threading.Event()

        def watch() -> None:
            stream = kubernetes.watch.Watch()
            for event in stream.stream(core.list_namespaced_secret, "w", label_selector="app=x", timeout_seconds=30):
                events.append((event["type"], event["object"].metadata.name))
                started.set()
                if event["type"] == "DELETED":
                    stream.stop()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        assert started.wait(30)  # the current object came first, as ADDED
        mark = core.list_namespaced_secret("w").metadata.resource_version
        core.create_namespaced_secret("w", secret("other", app="y"))  # not selected
        core.create_namespaced_secret("w", secret("new", app="x"))
        core.patch_namespaced_secret("new", "w", {"data": {"k": "dg=="}})
        core.delete_namespaced_secret("new", "w")
        thread.join(30)
        # resuming from a resourceVersion replays what happened after it
        replay = kubernetes.watch.Watch().stream(
            core.list_namespaced_secret, "w", resource_version=mark, timeout_seconds=1
        )
        replayed = [(e["type"], e["object"].metadata.name) for e in replay]
    assert events == [("ADDED", "before"), ("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "new")]
    assert replayed == [("ADDED", "other"), ("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "new")]


def test_discovery_lists_every_group_and_the_rbac_kinds(cluster: SimulatedCluster) -> None:
    with urllib.request.urlopen(f"{cluster.url}/apis") as response:
        groups = {g["name"] for g in json.loads(response.read())["groups"]}
    assert {"apps", "batch", "rbac.authorization.k8s.io"} <= groups
    with urllib.request.urlopen(f"{cluster.url}/apis/batch") as response:
        assert json.loads(response.read())["preferredVersion"]["groupVersion"] == "batch/v1"
    with pytest.raises(urllib.error.HTTPError) as unknown:
        urllib.request.urlopen(f"{cluster.url}/apis/example.com/v1/widgets")
    assert unknown.value.code == 404


# --- what a request costs ------------------------------------------------------------------------------


def test_a_selected_list_examines_what_it_returns_not_the_whole_cluster(cluster: SimulatedCluster) -> None:
    # Given a fleet of 300 customers (a release each: Secret, Deployments) and one more release in one of them
    for i in range(300):
        cluster.add_release(f"customer-{i:03d}", "stack")
    cluster.add_release("customer-007", "other")
    store = cluster._objects
    assert store is not None
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        core, apps = kubernetes.client.CoreV1Api(api_client), kubernetes.client.AppsV1Api(api_client)
        # When the product's lookups run
        before = store.examined
        assert names(core.list_namespaced_secret("customer-007", label_selector="owner=helm,name=other")) == [
            "sh.helm.release.v1.other.v1"
        ]
        helm_secret = store.examined - before
        before = store.examined
        selector = "app.kubernetes.io/instance=stack,app.kubernetes.io/component=api"
        assert len(apps.list_namespaced_deployment("customer-123", label_selector=selector).items) == 1
        workloads = store.examined - before
        before = store.examined
        page = core.list_secret_for_all_namespaces(limit=10)
        first_page = store.examined - before
    # Then each examined what it returned (plus the one look-ahead of a page), not the 1,500 objects stored
    assert (helm_secret, workloads) == (1, 1)
    assert len(page.items) == 10 and first_page == 11


def test_the_job_controller_looks_only_at_running_jobs(cluster: SimulatedCluster) -> None:
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        batch = kubernetes.client.BatchV1Api(api_client)
        for i in range(30):
            job = {"metadata": {"name": f"done-{i}"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
            batch.create_namespaced_job("upgrade-system", job)
    controller = cluster._jobs
    assert controller is not None
    wait_until(lambda: cluster.running_jobs() == 0 and len(controller.runs) == 30, what="30 finished Jobs")
    wait_until(lambda: controller.last_pass == 0, what="a pass over no running Job")  # not over the 30 finished
    cluster.hold()
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        job = {"metadata": {"name": "held"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
        kubernetes.client.BatchV1Api(api_client).create_namespaced_job("upgrade-system", job)
    wait_until(lambda: controller.last_pass == 1, what="a pass over the one running Job")
    cluster.release()
