"""The node agent's fault rule (`--never-ready-tag`): which customer pods never get Ready. A deploy checked by the
images' pre-flight sets the tag pinned to its digest (`v9.9.9-bad@sha256:…`): the pattern still matches the tag.
No control plane needed."""

from __future__ import annotations

from typing import Any

import pytest

from upgradectl.local.realcluster.agent import FaultRule, image_tag

DIGEST = "sha256:" + "ab" * 32


def pod(image: str, namespace: str = "customer-a") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace}, "spec": {"containers": [{"name": "api", "image": image}]}}


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("127.0.0.1:5000/api:v9.9.9-bad", "v9.9.9-bad"),
        (f"127.0.0.1:5000/api:v9.9.9-bad@{DIGEST}", "v9.9.9-bad"),
        (f"registry.example.com/team/api:v1.2.0@{DIGEST}", "v1.2.0"),
        (f"127.0.0.1:5000/api@{DIGEST}", None),  # a digest alone: no tag for a pattern to match
        ("127.0.0.1:5000/api", None),  # the port is not a tag
        ("Not An Image", None),
    ],
)
def test_the_tag_is_read_without_the_registry_port_or_the_pinned_digest(image: str, tag: str | None) -> None:
    assert image_tag(image) == tag


def test_a_pinned_tag_that_matches_the_pattern_never_gets_ready() -> None:
    rule = FaultRule(broken_tag_pattern="*-bad")
    assert rule.never_ready(pod(f"127.0.0.1:5000/api:v9.9.9-bad@{DIGEST}"))
    assert rule.never_ready(pod("127.0.0.1:5000/api:v9.9.9-bad"))


def test_a_pinned_tag_that_does_not_match_gets_ready() -> None:
    rule = FaultRule(broken_tag_pattern="*-bad")
    assert not rule.never_ready(pod(f"127.0.0.1:5000/api:v1.2.0@{DIGEST}"))
    assert not rule.never_ready(pod(f"127.0.0.1:5000/api@{DIGEST}"))


def test_a_never_ready_namespace_matches_whatever_the_image() -> None:
    rule = FaultRule(broken_tag_pattern="*-bad", never_ready_namespaces={"customer-b"})
    assert rule.never_ready(pod(f"127.0.0.1:5000/api:v1.2.0@{DIGEST}", namespace="customer-b"))
