"""The deploy's image pre-flight (upgrader.images.preflight) over an in-memory registry: digests per customer,
one resolution per distinct image, missing targets and rollbacks, mutable tags, the refusal."""

from __future__ import annotations

import hashlib
import threading

import pytest
from upgrader.images.preflight import ImagesRefused, ResolutionCache, customer_images, run_preflight
from upgrader.images.references import ImageReference, MutableTags
from upgrader.images.registry import OCI_MANIFEST, Missing, RegistryUnavailable, Resolution, Resolved
from upgrader.infra.errors import InvalidValue

REPO = "registry.example.com/customer-stack/api"


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class FakeRegistry:
    """Holds `repository:tag` -> digest; counts every resolution asked of it."""

    def __init__(self, images: dict[str, str], fail: Exception | None = None) -> None:
        self.images = images
        self.fail = fail
        self.asked: list[str] = []
        self._lock = threading.Lock()

    def resolve(self, reference: ImageReference) -> Resolution:
        with self._lock:
            self.asked.append(str(reference))
        if self.fail:
            raise self.fail
        digest = self.images.get(f"{reference.name}:{reference.tag}")
        if digest is None or (reference.digest and reference.digest != digest):
            return Missing(reference, "no such tag")
        return Resolved(reference, digest, OCI_MANIFEST)


def fleet(count: int, target: str, currents: tuple[str, ...], repositories: tuple[str, ...] = (REPO,)):
    return [
        customer_images(f"c-{n:04d}", repositories[n % len(repositories)], target, currents[n % len(currents)])
        for n in range(count)
    ]


def test_every_customer_gets_the_digest_of_its_target_and_rollback_image():
    registry = FakeRegistry({f"{REPO}:v2.0.0": digest_of("v2"), f"{REPO}:v1.0.0": digest_of("v1")})
    result = run_preflight(fleet(3, "v2.0.0", ("v1.0.0",)), registry)
    assert {c: r.digest for c, r in result.targets.items()} == {f"c-000{n}": digest_of("v2") for n in range(3)}
    assert {c: r.digest for c, r in result.rollbacks.items()} == {f"c-000{n}": digest_of("v1") for n in range(3)}
    assert result.refusal(allow_no_rollback_image=False) is None


@pytest.mark.parametrize("parallel", [1, 8])
def test_1000_customers_on_3_images_ask_the_registry_once_per_distinct_image(parallel):
    repositories = (REPO, "registry.example.com/customer-stack/dashboard", "ghcr.io/acme/exporter")
    images = {f"{repo}:{tag}": digest_of(repo + tag) for repo in repositories for tag in ("v1", "v2")}
    registry = FakeRegistry(images)
    result = run_preflight(fleet(1000, "v2", ("v1",), repositories), registry, parallel=parallel)
    assert sorted(registry.asked) == sorted(f"{repo}:{tag}" for repo in repositories for tag in ("v1", "v2"))
    assert result.distinct_images == 6 and len(result.targets) == len(result.rollbacks) == 1000


def test_a_missing_target_refuses_the_deploy_naming_each_image_and_its_customers():
    registry = FakeRegistry({f"{REPO}:v1.0.0": digest_of("v1")})
    result = run_preflight(fleet(12, "v9.9.9", ("v1.0.0",)), registry)
    refusal = result.refusal(allow_no_rollback_image=True)
    assert isinstance(refusal, ImagesRefused) and refusal.http_status == 422
    assert [p.customer_id for p in refusal.problems] == [f"c-{n:04d}" for n in range(12)]
    assert {p.as_dict()["image"] for p in refusal.problems} == {f"{REPO}:v9.9.9"}
    assert f"target image {REPO}:v9.9.9 (not in the registry) for 12 customer(s): c-0000, " in refusal.message
    assert "and 2 more" in refusal.message


def test_a_missing_rollback_image_refuses_unless_allowed():
    registry = FakeRegistry({f"{REPO}:v2.0.0": digest_of("v2"), f"{REPO}:v1.0.0": digest_of("v1")})
    result = run_preflight(fleet(4, "v2.0.0", ("v1.0.0", "v0.9.0")), registry)
    assert sorted(p.customer_id for p in result.missing_rollbacks) == ["c-0001", "c-0003"]
    refusal = result.refusal(allow_no_rollback_image=False)
    assert refusal is not None and {p.role for p in refusal.problems} == {"rollback"}
    assert "allowNoRollbackImage" in refusal.message
    assert result.refusal(allow_no_rollback_image=True) is None
    assert sorted(result.rollbacks) == ["c-0000", "c-0002"] and len(result.targets) == 4


def test_a_customer_whose_current_version_is_unknown_has_no_rollback_image():
    registry = FakeRegistry({f"{REPO}:v2.0.0": digest_of("v2")})
    result = run_preflight([customer_images("c-1", REPO, "v2.0.0", None)], registry)
    assert [(p.customer_id, p.reason) for p in result.missing_rollbacks] == [
        ("c-1", "the version it runs is not known")
    ]
    assert registry.asked == [f"{REPO}:v2.0.0"]


def test_mutable_tags_are_refused_without_asking_the_registry():
    registry = FakeRegistry({f"{REPO}:latest": digest_of("l"), f"{REPO}:main": digest_of("m")})
    result = run_preflight(fleet(2, "latest", ("main",)), registry, mutable_tags=MutableTags("main"))
    assert registry.asked == []
    assert sorted((p.customer_id, p.role) for p in result.mutable) == [
        ("c-0000", "rollback"), ("c-0000", "target"), ("c-0001", "rollback"), ("c-0001", "target"),
    ]  # fmt: skip
    refusal = result.refusal(allow_no_rollback_image=True)
    assert refusal is not None and {p.role for p in refusal.problems} == {"target"}


def test_a_pinned_current_tag_value_is_checked_by_its_digest():
    pinned = digest_of("v1")
    registry = FakeRegistry({f"{REPO}:v2": digest_of("v2"), f"{REPO}:v1": pinned})
    customers = [
        customer_images("c-1", REPO, "v2", f"v1@{pinned}"),
        customer_images("c-2", REPO, "v2", f"v1@{digest_of('gone')}"),
    ]
    result = run_preflight(customers, registry)
    assert result.rollbacks["c-1"].digest == pinned
    assert [p.customer_id for p in result.missing_rollbacks] == ["c-2"]


def test_a_registry_error_fails_the_preflight():
    registry = FakeRegistry({}, fail=RegistryUnavailable("registry.example.com", "HTTP 503"))
    with pytest.raises(RegistryUnavailable, match="registry.example.com"):
        run_preflight(fleet(5, "v2", ("v1",)), registry)


def test_a_cache_shared_by_two_preflights_of_one_deploy_asks_nothing_the_second_time():
    registry = FakeRegistry({f"{REPO}:v2": digest_of("v2"), f"{REPO}:v1": digest_of("v1")})
    cache = ResolutionCache(registry)
    first = run_preflight(fleet(10, "v2", ("v1",)), registry, cache=cache)
    second = run_preflight(fleet(10, "v2", ("v1",)), registry, cache=cache)
    assert len(registry.asked) == 2 and first.targets == second.targets


def test_a_release_naming_no_usable_repository_is_refused_naming_the_customer():
    with pytest.raises(InvalidValue, match="customer c-7: .*Registry.example.com/API") as caught:
        customer_images("c-7", "Registry.example.com/API", "v2", "v1")
    assert caught.value.http_status == 422


def test_an_unusable_current_tag_leaves_no_rollback_image_with_the_reason():
    images = customer_images("c-8", REPO, "v2", "not a tag!")
    assert images.rollback is None and "current tag is not usable" in images.no_rollback_reason


def test_a_customer_whose_release_pins_a_digest_has_that_exact_rollback_image():
    digest = "sha256:" + "d" * 64
    images = customer_images("c-1", REPO, "v2", "v1", current_digest=digest)
    assert images.rollback is not None and images.rollback.digest == digest and images.rollback.tag == "v1"
    # a current tag value that carries a digest already is read as its version, pinned to the release's digest
    other = "sha256:" + "f" * 64
    assert customer_images("c-1", REPO, "v2", f"v1@{other}", current_digest=digest).rollback == images.rollback
    assert customer_images("c-1", REPO, "v2", "v1").rollback.digest is None  # type: ignore[union-attr]
