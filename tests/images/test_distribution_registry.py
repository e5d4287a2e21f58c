"""The OCI distribution adapter against a real registry (docker-registry 2.8 on 127.0.0.1), filled with images
built here and pushed with skopeo; the proxy (tests/support/registry_proxy.py) adds auth and faults."""

from __future__ import annotations

import hashlib
import socket
import time

import pytest
from upgrader.images.distribution import DistributionRegistry, RegistryCredentials
from upgrader.images.preflight import customer_images, run_preflight
from upgrader.images.references import parse_reference
from upgrader.images.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    DigestMismatch,
    MalformedManifest,
    Missing,
    RegistryUnauthorized,
    RegistryUnavailable,
    Resolved,
)
from upgrader.infra.components import REGISTRY

from tests.support.registry_proxy import ProxyRules
from upgradectl.local.realcluster.processes import free_port
from upgradectl.local.registry import push_sample_images
from upgradectl.local.simcluster.charts import component_defaults, effective_images


def resolve(host: str, image: str, adapter: DistributionRegistry | None = None) -> Resolved | Missing:
    return (adapter or DistributionRegistry(timeout=5)).resolve(parse_reference(f"{host}/{image}"))


def test_a_pushed_tag_resolves_to_the_digest_skopeo_reports(registry, skopeo, push):
    written = push("found/api", "v1.2.0", b"api 1.2.0")
    answer = resolve(registry.host, "found/api:v1.2.0")
    assert isinstance(answer, Resolved)
    assert answer.digest == skopeo.digest(registry.host, "found/api", "v1.2.0") == written
    assert (
        answer.digest
        == "sha256:" + hashlib.sha256(skopeo.raw_manifest(registry.host, "found/api", "v1.2.0")).hexdigest()
    )
    assert answer.media_type == OCI_MANIFEST and not answer.multi_arch


def test_a_tag_never_pushed_is_missing_not_an_error(registry, push):
    push("missing/api", "v1.0.0", b"api 1.0.0")
    assert isinstance(resolve(registry.host, "missing/api:v1.0.1"), Missing)
    assert isinstance(resolve(registry.host, "never/pushed:v1.0.0"), Missing)


def test_a_multi_arch_index_resolves_to_the_index_digest(registry, skopeo, push):
    written = push("multi/api", "v2.0.0", b"api 2.0.0", platforms=2)
    answer = resolve(registry.host, "multi/api:v2.0.0")
    assert isinstance(answer, Resolved)
    assert answer.media_type == OCI_INDEX and answer.multi_arch
    raw = skopeo.raw_manifest(registry.host, "multi/api", "v2.0.0")
    assert answer.digest == written == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert b'"arm64"' in raw  # the index itself, not one platform's manifest


def test_a_moved_tag_resolves_to_a_different_digest(registry, push):
    first = push("moved/api", "v3.0.0", b"the first build")
    before = resolve(registry.host, "moved/api:v3.0.0")
    second = push("moved/api", "v3.0.0", b"a rebuild pushed over the same tag")
    after = resolve(registry.host, "moved/api:v3.0.0")
    assert isinstance(before, Resolved) and isinstance(after, Resolved)
    assert (before.digest, after.digest) == (first, second) and first != second


def test_a_pinned_digest_is_checked_against_the_registry(registry, push):
    digest = push("pinned/api", "v1.0.0", b"pinned")
    assert isinstance(resolve(registry.host, f"pinned/api:v1.0.0@{digest}"), Resolved)
    other = "sha256:" + "0" * 64
    assert isinstance(resolve(registry.host, f"pinned/api:v1.0.0@{other}"), Missing)


def test_a_registry_announcing_another_digest_for_a_pinned_one_is_refused(proxy, push):
    digest = push("pinned/api", "v1.1.0", b"pinned 1.1.0")
    front = proxy(ProxyRules(announce_digest="sha256:" + "1" * 64))
    with pytest.raises(DigestMismatch, match="asked for"):
        resolve(front.host, f"pinned/api:v1.1.0@{digest}")


def test_a_registry_that_is_down_is_unavailable():
    port = free_port()  # nothing listens there
    with pytest.raises(RegistryUnavailable) as caught:
        resolve(f"127.0.0.1:{port}", "down/api:v1.0.0", DistributionRegistry(timeout=2))
    assert caught.value.http_status == 503 and f"127.0.0.1:{port}" in caught.value.message


def test_a_registry_answering_500_is_unavailable(proxy):
    front = proxy(ProxyRules(fail_status=500))
    with pytest.raises(RegistryUnavailable, match="HTTP 500") as caught:
        resolve(front.host, "any/api:v1.0.0")
    assert front.host in caught.value.message


def test_a_token_registry_without_credentials_is_unauthorized_naming_the_source(proxy, push):
    push("private/api", "v1.0.0", b"private")
    front = proxy(ProxyRules(auth="bearer", users={"deployer": "s3cret"}))
    with pytest.raises(RegistryUnauthorized) as caught:
        resolve(front.host, "private/api:v1.0.0")
    assert caught.value.http_status == 502
    assert f"no credentials configured for {front.host}" in caught.value.message


def test_the_bearer_token_flow_with_credentials_resolves_and_reuses_the_token(proxy, push):
    digest = push("private/api", "v1.1.0", b"private 1.1.0")
    push("private/api", "v1.2.0", b"private 1.2.0")
    front = proxy(ProxyRules(auth="bearer", users={"deployer": "s3cret"}))
    credentials = {front.host: RegistryCredentials("deployer", "s3cret", source="secret registry-credentials")}
    adapter = DistributionRegistry(credentials, timeout=5)
    answer = resolve(front.host, "private/api:v1.1.0", adapter)
    assert isinstance(answer, Resolved) and answer.digest == digest
    assert [(m, p.split("?")[0], s) for m, p, s in front.seen] == [
        ("HEAD", "/v2/private/api/manifests/v1.1.0", 401),
        ("GET", "/token", 200),
        ("HEAD", "/v2/private/api/manifests/v1.1.0", 200),
    ]
    assert "scope=repository%3Aprivate%2Fapi%3Apull" in front.seen[1][1]
    assert isinstance(resolve(front.host, "private/api:v1.2.0", adapter), Resolved)
    assert len(front.seen) == 4  # the second tag of the repository: one request, the token kept


def test_wrong_credentials_are_unauthorized_naming_their_source(proxy, push):
    push("private/api", "v1.3.0", b"private 1.3.0")
    front = proxy(ProxyRules(auth="bearer", users={"deployer": "s3cret"}))
    credentials = {front.host: RegistryCredentials("deployer", "wrong", source="secret registry-credentials")}
    with pytest.raises(RegistryUnauthorized, match="credentials from secret registry-credentials") as caught:
        resolve(front.host, "private/api:v1.3.0", DistributionRegistry(credentials))
    assert "wrong" not in caught.value.message


def test_basic_auth(proxy, push):
    digest = push("basic/api", "v1.0.0", b"basic")
    front = proxy(ProxyRules(auth="basic", users={"deployer": "s3cret"}))
    credentials = {front.host: RegistryCredentials("deployer", "s3cret", source="secret basic")}
    answer = resolve(front.host, "basic/api:v1.0.0", DistributionRegistry(credentials))
    assert isinstance(answer, Resolved) and answer.digest == digest
    with pytest.raises(RegistryUnauthorized):
        resolve(front.host, "basic/api:v1.0.0")


def test_a_head_without_the_digest_header_falls_back_to_a_get_and_hashes_the_body(proxy, push):
    digest = push("nohead/api", "v1.0.0", b"no digest on HEAD")
    front = proxy(ProxyRules(strip_digest=True))
    answer = resolve(front.host, "nohead/api:v1.0.0")
    assert isinstance(answer, Resolved) and answer.digest == digest
    assert [(m, s) for m, _, s in front.seen] == [("HEAD", 200), ("GET", 200)]


def test_a_manifest_whose_bytes_do_not_match_its_digest_is_refused(proxy, push):
    push("corrupt/api", "v1.0.0", b"corrupted on the way")
    front = proxy(ProxyRules(strip_digest=True, corrupt_body=True))
    with pytest.raises(DigestMismatch) as caught:
        resolve(front.host, "corrupt/api:v1.0.0")
    assert caught.value.http_status == 502


def test_an_answer_that_is_not_a_manifest_is_refused(proxy, push):
    push("html/api", "v1.0.0", b"html")
    front = proxy(ProxyRules(content_type="text/html"))
    with pytest.raises(MalformedManifest, match="text/html"):
        resolve(front.host, "html/api:v1.0.0")


def test_1000_customers_on_3_images_cost_one_registry_request_per_distinct_image(registry, push):
    for version in ("v5.0.0", "v5.1.0", "v5.2.0", "v6.0.0"):
        push("fleet/api", version, f"api {version}".encode())
    repositories = [f"{registry.host}/fleet/api"]
    customers = [
        customer_images(f"c-{n:04d}", repositories[0], "v6.0.0", ("v5.0.0", "v5.1.0", "v5.2.0")[n % 3])
        for n in range(1000)
    ]
    before = len(registry.requests())
    result = run_preflight(customers, DistributionRegistry(timeout=5))
    manifest_requests = [r for r in registry.requests()[before:] if "/manifests/" in r.path]
    assert len(manifest_requests) == 4  # one target image, three rollback images
    assert sorted(r.path.rsplit("/", 1)[1] for r in manifest_requests) == ["v5.0.0", "v5.1.0", "v5.2.0", "v6.0.0"]
    assert len(result.targets) == len(result.rollbacks) == 1000
    assert result.refusal(allow_no_rollback_image=False) is None


def test_1000_customers_on_3_target_and_3_rollback_images_through_a_token_registry(proxy, push):
    repositories = ("team-a/api", "team-b/api", "team-c/exporter")
    for repository in repositories:
        for version in ("v7.0.0", "v8.0.0"):
            push(repository, version, f"{repository} {version}".encode())
    front = proxy(ProxyRules(auth="bearer"))
    customers = [
        customer_images(f"c-{n:04d}", f"{front.host}/{repositories[n % 3]}", "v8.0.0", "v7.0.0") for n in range(1000)
    ]
    result = run_preflight(customers, DistributionRegistry(timeout=5))
    answered = [(path, status) for _, path, status in front.manifest_requests() if status != 401]
    assert len(answered) == len(set(answered)) == 6 == result.distinct_images  # 3 repositories x (target, rollback)
    assert {status for _, status in answered} == {200}
    assert len(front.seen) <= 6 + 3 * 2  # at most one challenge and one token per repository besides
    assert len(result.targets) == len(result.rollbacks) == 1000


def test_a_registry_that_never_answers_is_unavailable_within_the_timeout():
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable, match="timed out"):
            resolve(f"127.0.0.1:{silent.getsockname()[1]}", "slow/api:v1.0.0", DistributionRegistry(timeout=0.5))
        assert time.monotonic() - started < 3


def test_the_demo_versions_pushed_resolve_and_the_simulated_chart_renders_the_pinned_digest(registry, skopeo, tmp_path):
    pushed = push_sample_images(registry.host, skopeo, tmp_path)
    assert len(pushed) == 2 * len(REGISTRY.names())
    customers = [
        customer_images(
            f"c-{spec.name}", spec.sample_image_repository(registry.host), spec.sample.newer_tag, spec.sample.older_tag
        )
        for spec in REGISTRY
    ]
    result = run_preflight(customers, DistributionRegistry(timeout=5))
    assert {c: r.digest for c, r in result.targets.items()} == {
        f"c-{spec.name}": pushed[(spec.sample_image_repository(registry.host), spec.sample.newer_tag)]
        for spec in REGISTRY
    }
    assert all(r.multi_arch for r in result.targets.values())
    # The chart contract: the pinned tag value, rendered by the sample chart as repository:tag, names the digest.
    spec = REGISTRY.get("api")
    resolved = result.targets["c-api"]
    chart = {"values": component_defaults({s.name: s.sample.older_tag for s in REGISTRY})}
    config = {
        "api": {
            "image": {
                "repository": spec.sample_image_repository(registry.host),
                "tag": resolved.reference.pinned(resolved.digest).tag_value(),
            }
        }
    }
    image = effective_images(chart, config)["api"]
    assert image == f"{registry.host}/api:{spec.sample.newer_tag}@{resolved.digest}"
    assert isinstance(resolve(registry.host, image.split("/", 1)[1]), Resolved)


def test_a_rollback_image_cleaned_up_from_the_registry_refuses_the_deploy_unless_allowed(registry, skopeo, push):
    push("cleaned/api", "v1.0.0", b"the version the customers run")
    push("cleaned/api", "v1.1.0", b"the target")
    customers = [customer_images(f"c-{n}", f"{registry.host}/cleaned/api", "v1.1.0", "v1.0.0") for n in range(3)]
    assert run_preflight(customers, DistributionRegistry()).refusal(allow_no_rollback_image=False) is None
    skopeo.delete(registry.host, "cleaned/api", "v1.0.0")  # a cleanup policy removed the old image
    result = run_preflight(customers, DistributionRegistry())
    refusal = result.refusal(allow_no_rollback_image=False)
    assert refusal is not None and [(p.customer_id, p.role) for p in refusal.problems] == [
        ("c-0", "rollback"), ("c-1", "rollback"), ("c-2", "rollback"),
    ]  # fmt: skip
    assert result.refusal(allow_no_rollback_image=True) is None and len(result.targets) == 3
