"""A tag moved during the rollout is reported, never followed (issue 22, docs/images.md): before each wave the
tags its customers were pinned for are resolved again in the real registry (docker-registry on 127.0.0.1, images
pushed with skopeo); a tag naming another digest, or nothing, is recorded once with an `Image Tag Moved` event, the
status lists it, and every wave still installs the pinned digest. The real state machine, real API, PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from upgrader import factory
from upgrader.rollout.image_recheck import recheck_wave

from tests.api.helpers import continue_, deploy
from tests.e2e.conftest import Stack, set_strings
from tests.support.event_schemas import recorded_events
from tests.support.registry_proxy import ProxyRules

pytestmark = pytest.mark.e2e
MOVED = "Image Tag Moved"


def _customers_on(stack: Stack, make_customers: Callable[..., list[str]], repository: str, n: int = 4) -> list[str]:
    ids = make_customers(n, repositories={"api": repository})
    for customer_id in ids:
        name = f"customer-{customer_id.removeprefix('cust_')}"
        stack.cluster.add_release(name, name, values={"api.image.tag": "v1.1.0", "api.image.repository": repository})
    return ids


def _canary_until_the_gate(stack: Stack) -> dict[str, Any]:
    started = deploy(component="api", version="v1.2.0", strategy="canary", canaryPercent=50)
    assert started["waves"] == [2, 2]
    stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")
    return started


def _finish(stack: Stack, started: dict[str, Any]) -> dict[str, Any]:
    code, body = continue_(started["upgradeId"])
    assert code == 200, body
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    final = stack.status(started["upgradeId"])
    assert (final["status"], final["completed"]) == ("completed", 4), final
    return final


def _upgrade_values(stack: Stack) -> list[list[str]]:
    return [set_strings(j) for j in stack.cluster.created_jobs if "helm-upgrade-" in j.manifest["metadata"]["name"]]


def test_a_tag_moved_between_waves_is_reported_once_and_never_followed(
    checked_stack,
    make_customers,
    registry,
    push,
    database_url,
):
    # Given 4 customers whose releases name a repository of the real registry, and a canary of api v1.2.0 waiting
    repository = f"{registry.host}/moving/api"
    push("moving/api", "v1.1.0", b"api v1.1.0")
    pinned = push("moving/api", "v1.2.0", b"api v1.2.0 as released")
    _customers_on(checked_stack, make_customers, repository)
    started = _canary_until_the_gate(checked_stack)
    assert checked_stack.status(started["upgradeId"])["movedTags"] == []  # wave 0's re-check found it in place

    # When someone pushes other bytes under the same tag during the gate, and the canary is continued
    moved = push("moving/api", "v1.2.0", b"api v1.2.0 rebuilt")
    assert moved != pinned
    final = _finish(checked_stack, started)

    # Then the status names the move, found before wave 1, for its 2 customers
    assert [{k: v for k, v in m.items() if k != "detectedAt"} for m in final["movedTags"]] == [
        {"repository": repository, "tag": "v1.2.0", "pinnedDigest": pinned, "currentDigest": moved,
         "pinnedDigestPresent": True, "wave": 1, "customers": 2}
    ]  # fmt: skip
    # one event, with the digests and the wave (its schema is checked after every e2e test)
    sent = [detail for kind, detail in recorded_events(database_url) if kind == MOVED]
    assert [(d["image"]["pinnedDigest"], d["image"]["currentDigest"], d["severity"]) for d in sent] == [
        (pinned, moved, "attention")
    ]
    # and every helm Job of both waves installed the pinned digest, never the moved one
    assert _upgrade_values(checked_stack) == [[f"api.image.tag=v1.2.0@{pinned}"]] * 4

    # When PrepareWave is retried (the same step again), nothing more is recorded or sent
    again = recheck_wave(int(started["upgradeId"]), started["jobId"], 1, moves=factory.image_moves(),
                         registry=factory.image_registry)  # fmt: skip
    assert [m["current_digest"] for m in again["moved"]] == [moved]
    assert len([1 for kind, _ in recorded_events(database_url) if kind == MOVED]) == 1
    assert len(checked_stack.status(started["upgradeId"])["movedTags"]) == 1


def test_each_wave_asks_the_registry_once_per_distinct_image(checked_stack, make_customers, registry, push):
    repository = f"{registry.host}/asked/api"
    push("asked/api", "v1.1.0", b"api v1.1.0")
    push("asked/api", "v1.2.0", b"api v1.2.0")
    _customers_on(checked_stack, make_customers, repository)
    before = len(registry.requests())
    started = _canary_until_the_gate(checked_stack)
    _finish(checked_stack, started)

    asked = [r for r in registry.requests()[before:] if r.path == "/v2/asked/api/manifests/v1.2.0"]
    # the deploy's pre-flight, then the re-check before each of the 2 waves: one request each, whatever the customers
    assert len(asked) == 3, asked


def test_a_failing_registry_does_not_stop_the_wave(checked_stack, make_customers, registry, push, proxy):
    # Given the releases name the registry through a front that can be made to fail
    front = proxy(ProxyRules())
    repository = f"{front.host}/failing/api"
    push("failing/api", "v1.1.0", b"api v1.1.0")
    pinned = push("failing/api", "v1.2.0", b"api v1.2.0")
    _customers_on(checked_stack, make_customers, repository)
    started = _canary_until_the_gate(checked_stack)

    # When the registry answers 500 to everything during the re-check before wave 1
    front.rules.fail_status = 500
    final = _finish(checked_stack, started)

    # Then the wave still ran with the pinned digest, and nothing was recorded as moved
    assert final["movedTags"] == []
    assert _upgrade_values(checked_stack) == [[f"api.image.tag=v1.2.0@{pinned}"]] * 4
    assert any(status == 500 and "manifests/v1.2.0" in path for _, path, status in front.seen)


def test_a_deleted_image_halts_the_upgrade_before_the_wave_that_could_not_pull_it(
    checked_stack, make_customers, registry, push, skopeo, database_url
):
    repository = f"{registry.host}/deleted/api"
    push("deleted/api", "v1.1.0", b"api v1.1.0")
    pinned = push("deleted/api", "v1.2.0", b"api v1.2.0")
    _customers_on(checked_stack, make_customers, repository)
    started = _canary_until_the_gate(checked_stack)

    # When the tag is deleted during the gate (docker-registry deletes its manifest: the pinned digest is gone too)
    skopeo.delete(registry.host, "deleted/api", "v1.2.0")
    code, body = continue_(started["upgradeId"])
    assert code == 200, body
    assert checked_stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"

    # Then the upgrade halted before wave 1, naming the image; its 2 customers were never started
    final = checked_stack.status(started["upgradeId"])
    assert (final["status"], final["completed"], final["skipped"]) == ("halted", 2, 2), final
    assert final["haltReason"].startswith(f"image {repository}@{pinned} (tag v1.2.0, pinned by the deploy) is gone")
    assert len(_upgrade_values(checked_stack)) == 2  # only the canary's helm Jobs
    assert [
        (m["pinnedDigest"], m["currentDigest"], m["pinnedDigestPresent"], m["wave"]) for m in final["movedTags"]
    ] == [(pinned, None, False, 1)]
    sent = [d["image"] for kind, d in recorded_events(database_url) if kind == MOVED]
    assert [(i["currentDigest"], i["pinnedDigestPresent"]) for i in sent] == [(None, False)]


def test_a_trains_other_component_is_re_checked_too(checked_stack, make_customers, registry, push, database_url):
    # Given 4 customers on api v1.1.0 and dashboard v1.9.0 whose releases name repositories of the real registry
    before, train = {"api": "v1.1.0", "dashboard": "v1.9.0"}, {"api": "v2.0.0", "dashboard": "v2.0.0"}
    repositories = {c: f"{registry.host}/moving-train/{c}" for c in train}
    pinned = {c: push(f"moving-train/{c}", train[c], f"{c} v2.0.0".encode()) for c in train}
    for c in train:
        push(f"moving-train/{c}", before[c], f"{c} {before[c]}".encode())
    ids = make_customers(4, versions=before, repositories=repositories)
    values = {f"{c}.image.{k}": v for c in train for k, v in (("tag", before[c]), ("repository", repositories[c]))}
    for customer_id in ids:
        name = f"customer-{customer_id.removeprefix('cust_')}"
        checked_stack.cluster.add_release(name, name, values=values)
    started = deploy(components=train, strategy="canary", canaryPercent=50)
    checked_stack.wait_for_status(started["upgradeId"], lambda s: s["status"] == "awaiting_continue")

    # When the train's second component's tag is moved during the gate
    moved = push("moving-train/dashboard", "v2.0.0", b"dashboard v2.0.0 rebuilt")
    final = _finish(checked_stack, started)

    # Then the move is reported for dashboard, and its helm values stay pinned to what the deploy resolved
    assert [(m["repository"], m["pinnedDigest"], m["currentDigest"], m["customers"]) for m in final["movedTags"]] == [
        (repositories["dashboard"], pinned["dashboard"], moved, 2)
    ]
    assert all(
        f"dashboard.image.tag=v2.0.0@{pinned['dashboard']}" in values for values in _upgrade_values(checked_stack)
    )
    assert len([1 for kind, _ in recorded_events(database_url) if kind == MOVED]) == 1
