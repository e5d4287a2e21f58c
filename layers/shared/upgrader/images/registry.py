"""The image registry port: resolve an image reference to the digest of its manifest, and the named
errors the adapters raise (the API maps them by their `http_status`: upgrader.api.http).

A tag the registry does not have is an answer (`Missing`), not an error: the pre-flight collects them all and
the deploy refuses with the complete list (422). An unreachable or failing registry is an error: the deploy
answers 503 naming the registry and never starts blind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from upgrader.images.references import ImageReference
from upgrader.infra.errors import UpgradeError

# What the pre-flight accepts as "the image": a single-platform manifest or a multi-arch index, OCI or Docker.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The registry holds the image: the digest of its manifest (or of its multi-arch index)."""

    reference: ImageReference
    digest: str
    media_type: str

    @property
    def multi_arch(self) -> bool:
        return self.media_type in INDEX_TYPES


@dataclass(frozen=True, slots=True)
class Missing:
    """The registry answered that it has no such tag (or digest, or repository)."""

    reference: ImageReference
    reason: str


Resolution = Resolved | Missing


class ImageRegistry(Protocol):
    """Resolves references to digests (one registry API request per call, at most a token request more)."""

    def resolve(self, reference: ImageReference) -> Resolution: ...


class RegistryRouter:
    """The adapter for each registry host: ECR's hosts to the ECR adapter, the rest to the distribution API."""

    def __init__(
        self,
        default: ImageRegistry,
        by_host: Mapping[str, ImageRegistry] | None = None,
        by_rule: Sequence[tuple[Callable[[str], bool], ImageRegistry]] = (),
    ) -> None:
        self._default = default
        self._by_host = dict(by_host or {})
        self._by_rule = tuple(by_rule)  # e.g. (is_ecr_host, EcrRegions(...)): hosts a rule recognises

    def resolve(self, reference: ImageReference) -> Resolution:
        return self._adapter(reference.registry).resolve(reference)

    def _adapter(self, host: str) -> ImageRegistry:
        if host in self._by_host:
            return self._by_host[host]
        return next((adapter for matches, adapter in self._by_rule if matches(host)), self._default)


class RegistryError(UpgradeError):
    """Base of the registry's errors; `registry` is the host asked."""

    def __init__(self, registry: str, message: str) -> None:
        super().__init__(message)
        self.registry = registry


class RegistryUnavailable(RegistryError):
    """Unreachable, timed out, or answered 5xx / 429: 503, retry later. The deploy does not start."""

    http_status = 503

    def __init__(self, registry: str, detail: str) -> None:
        super().__init__(registry, f"image registry {registry} unavailable: {detail}; nothing was started, retry later")


class RegistryUnauthorized(RegistryError):
    """The registry refused the credentials we have (401/403 after authenticating): 502, naming where the
    credentials come from so an operator knows what to fix."""

    http_status = 502

    def __init__(self, registry: str, credentials_source: str, detail: str) -> None:
        super().__init__(
            registry,
            f"image registry {registry} refused access ({detail}) with the credentials from {credentials_source}",
        )
        self.credentials_source = credentials_source


class MalformedManifest(RegistryError):
    """The registry's answer is not a manifest we can trust (unknown media type, bad JSON, bad digest): 502."""

    http_status = 502

    def __init__(self, registry: str, reference: ImageReference, detail: str) -> None:
        super().__init__(registry, f"image {reference}: the registry's manifest is not usable: {detail}")


class DigestMismatch(MalformedManifest):
    """The manifest's bytes do not hash to the digest the registry announced (or that was asked for)."""
