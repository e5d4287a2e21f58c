"""Image references: `[registry/]repository[:tag][@sha256:digest]`, the grammar of the distribution
project's `reference` package, and where a release's values name them.

A release names its image in two values (the sample chart and the simulated cluster:
upgradectl/local/simcluster/charts.py): `<component>.image.repository` and `<component>.image.tag`. The tag
key is the component's fact (`upgrader.infra.components.ComponentSpec.image_tag_key`, overridable in the
settings' IMAGE_TAG_KEYS); the repository and the optional digest are its siblings (`sibling_key`). A tag
value may carry the digest a deploy pinned (`v1.2.0@sha256:…`, docs/images.md), so a rollback image read
back from a release is exact as well. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# the rule lives with the components (the cluster adapter reads repositories too); re-exported here
from upgrader.infra.components import DIGEST as DIGEST
from upgrader.infra.components import digest_key as digest_key
from upgrader.infra.components import sibling_key as sibling_key
from upgrader.infra.errors import InvalidValue

DOCKER_HUB = "docker.io"
# docker.io is a name, not a host: the distribution API lives here (what docker and skopeo do).
DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?"
)
_IPV6_HOST = re.compile(r"\[[0-9A-Fa-f:]+\](?::[0-9]+)?")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_NAME = 255  # the distribution spec's limit on the repository name with its registry host
DEFAULT_MUTABLE_TAGS = ("latest",)


@dataclass(frozen=True, slots=True)
class ImageReference:
    """One image: its registry host, its repository path there, and a tag and/or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, as a chart's `image.repository` value names it."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """Where the registry's API answers (docker.io's is registry-1.docker.io)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def manifest_key(self) -> str:
        """What the manifest is asked by: the digest when there is one (exact), else the tag."""
        return self.digest or self.tag or "latest"

    def pinned(self, digest: str) -> ImageReference:
        return replace(self, digest=digest)

    def tag_value(self) -> str:
        """The chart's tag value that installs exactly this image: `v1.2.0@sha256:…` once pinned."""
        tag = self.tag or ""
        return f"{tag}@{self.digest}" if self.digest else tag

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"


def parse_reference(text: str) -> ImageReference:
    """`[host[:port]/]path[:tag][@digest]` -> ImageReference. InvalidValue (422, field "image") when it is
    not one; a name without a host is Docker Hub's (`library/` added to a one-part path, as docker does)."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise InvalidValue("image", f"not an image reference: {text!r}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST.fullmatch(digest):
            raise InvalidValue("image", f"{text!r}: the digest is not sha256:<64 hex> (or sha512)")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG.fullmatch(tag):
            raise InvalidValue(
                "image", f"{text!r}: the tag {tag!r} is not a valid tag (letters, digits, _ . -; at most 128)"
            )
    registry, repository = _split_host(rest)
    if not _PATH.fullmatch(repository):
        raise InvalidValue("image", f"{text!r}: the repository {repository!r} is not lower-case path components")
    if len(f"{registry}/{repository}") > MAX_NAME:
        raise InvalidValue("image", f"{text!r}: the name is longer than {MAX_NAME} characters")
    return ImageReference(registry, repository, tag, digest)


def _split_host(name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    # The first part is a host when it looks like one (a dot, a port, localhost), as docker decides.
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not (_HOST.fullmatch(first) or _IPV6_HOST.fullmatch(first)):
            raise InvalidValue("image", f"{name!r}: the registry host {first!r} is not a host[:port]")
        return first, remainder
    return DOCKER_HUB, (name if "/" in name else f"library/{name}")


def image_of(repository: str, tag_value: str) -> ImageReference:
    """The image a chart's values name: its `image.repository` value and its tag value (`v1.2.0`, or
    `v1.2.0@sha256:…` once a deploy pinned it). InvalidValue when either is not one."""
    if ":" in repository.rpartition("/")[2] or "@" in repository:
        raise InvalidValue("image", f"{repository!r}: a repository value names no tag or digest")
    if not tag_value or tag_value.startswith("@"):
        raise InvalidValue("image", f"{repository}: no tag in {tag_value!r}")
    return parse_reference(f"{repository}:{tag_value}")


def repository_key(tag_key: str) -> str:
    """Where a release's values name the image repository of the component whose tag is at `tag_key`."""
    return sibling_key(tag_key, "repository")


@dataclass(frozen=True, slots=True)
class MutableTags:
    """Tags that name no fixed image and are refused: `latest`, and those matching a configured pattern
    (e.g. `main|dev-.*`). A reference pinned by digest is exact whatever its tag says."""

    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise InvalidValue("mutableTagPattern", f"not a regular expression: {exc}") from exc

    def refuses(self, reference: ImageReference) -> bool:
        if reference.digest or reference.tag is None:
            return reference.tag is None and reference.digest is None
        if reference.tag in DEFAULT_MUTABLE_TAGS:
            return True
        return self.pattern is not None and re.fullmatch(self.pattern, reference.tag) is not None
