"""Image references (upgrader.images.references): the grammar, Docker Hub's defaults, pinned tag values, the
mutable-tag rule, and where a release's values name a component's repository."""

from __future__ import annotations

import pytest
from upgrader.images.references import (
    MutableTags,
    digest_key,
    image_of,
    parse_reference,
    repository_key,
)
from upgrader.infra.components import REGISTRY, image_values
from upgrader.infra.errors import InvalidValue

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("registry.example.com/api:v1.2.0", "registry.example.com", "api", "v1.2.0", None),
        ("127.0.0.1:5000/team/api:v1", "127.0.0.1:5000", "team/api", "v1", None),
        ("localhost/api", "localhost", "api", None, None),
        (f"registry.example.com:443/a/b/c:v1@{DIGEST}", "registry.example.com:443", "a/b/c", "v1", DIGEST),
        (f"ghcr.io/org/api@{DIGEST}", "ghcr.io", "org/api", None, DIGEST),
        ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
        ("bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", None),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/customer-stack/api:v1.2.0",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "customer-stack/api", "v1.2.0", None),
        ("r.example.com/a__b/c-d/e.f:v_1", "r.example.com", "a__b/c-d/e.f", "v_1", None),
    ],
)  # fmt: skip
def test_parses_a_reference(text, registry, repository, tag, digest):
    reference = parse_reference(text)
    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_docker_hub_is_asked_at_its_api_host():
    assert parse_reference("ubuntu:22.04").api_host == "registry-1.docker.io"
    assert parse_reference("ghcr.io/a/b:v1").api_host == "ghcr.io"


@pytest.mark.parametrize(
    "text",
    [
        "", " api:v1", "Registry.example.com/API:v1", "r.example.com/api:-v1", "r.example.com/api:" + "v" * 129,
        "r.example.com/api@sha256:abc", "r.example.com/api:v1@md5:" + "a" * 32, "r.example.com//api:v1",
        "r.example.com/api_:v1", "bad_host:5000/api:v1", "r.example.com/" + "a" * 256 + ":v1",
    ],
)  # fmt: skip
def test_refuses_what_is_not_a_reference_naming_the_field(text):
    with pytest.raises(InvalidValue) as caught:
        parse_reference(text)
    assert caught.value.field == "image" and caught.value.http_status == 422


def test_a_tag_is_at_most_128_characters():
    assert parse_reference("r.example.com/api:" + "v" * 128).tag == "v" * 128


def test_the_image_of_a_release_reads_a_pinned_tag_value():
    pinned = image_of("registry.example.com/api", f"v1.2.0@{DIGEST}")
    assert (pinned.tag, pinned.digest) == ("v1.2.0", DIGEST)
    assert pinned.tag_value() == f"v1.2.0@{DIGEST}"
    assert str(pinned) == f"registry.example.com/api:v1.2.0@{DIGEST}"
    plain = image_of("registry.example.com/api", "v1.2.0")
    assert plain.pinned(DIGEST) == pinned


@pytest.mark.parametrize(("repository", "tag"), [("r.example.com/api:v1", "v2"), (f"r.example.com/api@{DIGEST}", "v2"),
                                                 ("r.example.com/api", ""), ("r.example.com/api", f"@{DIGEST}")])  # fmt: skip
def test_the_image_of_a_release_refuses_a_tag_in_the_repository_value_or_no_tag(repository, tag):
    with pytest.raises(InvalidValue):
        image_of(repository, tag)


def test_a_repository_with_a_port_is_not_taken_for_a_tag():
    reference = image_of("127.0.0.1:5000/api", "v1")
    assert (reference.registry, reference.repository, reference.tag) == ("127.0.0.1:5000", "api", "v1")


def test_every_component_s_repository_and_digest_sit_beside_its_tag_key():
    for spec in REGISTRY:
        assert repository_key(spec.image_tag_key) == f"{spec.name}.image.repository"
        assert digest_key(spec.image_tag_key) == f"{spec.name}.image.digest"
    assert repository_key("stack.api.image.version") == "stack.api.image.repository"  # an overridden tag key


@pytest.mark.parametrize(("tag", "refused"), [("latest", True), ("v1.2.0", False), ("main", True), ("dev-42", True),
                                              ("maintenance", False), ("1.2", False)])  # fmt: skip
def test_mutable_tags_are_latest_and_the_configured_pattern(tag, refused):
    assert MutableTags(r"main|dev-.*").refuses(parse_reference(f"r.example.com/api:{tag}")) is refused


def test_latest_is_refused_without_a_pattern_and_a_digest_makes_any_tag_exact():
    assert MutableTags().refuses(parse_reference("r.example.com/api:latest"))
    assert not MutableTags().refuses(parse_reference("r.example.com/api:v1"))
    assert not MutableTags().refuses(parse_reference(f"r.example.com/api:latest@{DIGEST}"))
    assert MutableTags().refuses(parse_reference("r.example.com/api"))  # no tag: docker would take latest


def test_a_bad_pattern_names_its_field():
    with pytest.raises(InvalidValue) as caught:
        MutableTags("(")
    assert caught.value.field == "mutableTagPattern"


def test_image_values_sets_the_tag_and_the_digest_apart_only_for_a_chart_that_declares_the_digest_value():
    # form 1 (the default): the tag value carries the digest; without one, the tag alone
    assert image_values("api.image.tag", "v1.2.0", DIGEST, digest_declared=False) == [
        ("api.image.tag", f"v1.2.0@{DIGEST}")
    ]
    assert image_values("api.image.tag", "v1.2.0", None, digest_declared=False) == [("api.image.tag", "v1.2.0")]
    # form 2: the tag plain, the digest beside it, and "" when none was resolved (never left to helm's reuse)
    assert image_values("api.image.tag", "v1.2.0", DIGEST, digest_declared=True) == [
        ("api.image.tag", "v1.2.0"), ("api.image.digest", DIGEST)
    ]  # fmt: skip
    assert image_values("api.slots.green.tag", "v1.2.0", None, digest_declared=True) == [
        ("api.slots.green.tag", "v1.2.0"), ("api.slots.green.digest", "")
    ]  # fmt: skip
