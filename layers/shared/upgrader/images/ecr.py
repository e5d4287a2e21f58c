"""The Amazon ECR adapter: `BatchGetImage` resolves a tag to its manifest's digest (the manifest comes with it,
so the digest is checked against its bytes); `DescribeImages` tells when an image was pushed and which tags it
carries (the images report, docs/images.md). The client is boto3's, passed in (the factory builds it; moto's
in tests). IAM: ecr:BatchGetImage and ecr:DescribeImages on the repositories (upgrader.infra.aws_calls).

Errors as the distribution adapter names them: AccessDenied -> RegistryUnauthorized (the function's IAM role
is the credentials' source), throttling, 5xx and unreachable endpoints -> RegistryUnavailable, a tag or a
repository that does not exist -> Missing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from upgrader.images.references import ImageReference
from upgrader.images.registry import (
    MANIFEST_TYPES,
    DigestMismatch,
    MalformedManifest,
    Missing,
    RegistryUnauthorized,
    RegistryUnavailable,
    Resolution,
    Resolved,
)

ECR_HOST = re.compile(r"(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
CREDENTIALS_SOURCE = "the function's IAM role (ecr:BatchGetImage, ecr:DescribeImages)"
_MISSING = {"ImageNotFound", "ImageNotFoundException", "RepositoryNotFoundException", "ImageTagDoesNotMatchDigest"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "ExpiredTokenException"}


def is_ecr_host(host: str) -> bool:
    return ECR_HOST.fullmatch(host) is not None


@dataclass(frozen=True, slots=True)
class ImageDetails:
    """What DescribeImages says of one image."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: str | None


class EcrRegistry:
    """`ImageRegistry` for ECR's hosts (`<account>.dkr.ecr.<region>.amazonaws.com`)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests = 0

    def resolve(self, reference: ImageReference) -> Resolution:
        """The digest of the reference's manifest (one BatchGetImage call)."""
        account = self._account(reference)
        image_id = {"imageDigest": reference.digest} if reference.digest else {"imageTag": reference.tag or "latest"}
        if reference.digest and reference.tag:
            image_id["imageTag"] = reference.tag
        self.requests += 1
        try:
            answer = self._client.batch_get_image(
                registryId=account, repositoryName=reference.repository, imageIds=[image_id],
                acceptedMediaTypes=list(MANIFEST_TYPES),
            )  # fmt: skip
        except ClientError as exc:
            return self._failed(reference, exc)
        except BotoCoreError as exc:
            raise RegistryUnavailable(reference.registry, f"BatchGetImage: {exc}") from exc
        for failure in answer.get("failures") or []:
            code = str(failure.get("failureCode"))
            if code in _MISSING:
                return Missing(reference, f"ECR: {code}: {failure.get('failureReason', '')}".rstrip(": "))
            raise MalformedManifest(reference.registry, reference, f"ECR: {code}: {failure.get('failureReason', '')}")
        images = answer.get("images") or []
        if len(images) != 1:
            raise MalformedManifest(reference.registry, reference, f"ECR answered {len(images)} images for one")
        return self._resolved(reference, images[0])

    def describe(self, reference: ImageReference) -> ImageDetails | None:
        """DescribeImages of one tag or digest: its digest, tags and push time; None when ECR has no such image."""
        image_id = {"imageDigest": reference.digest} if reference.digest else {"imageTag": reference.tag or "latest"}
        self.requests += 1
        try:
            answer = self._client.describe_images(
                registryId=self._account(reference), repositoryName=reference.repository, imageIds=[image_id]
            )
        except ClientError as exc:
            if self._failed(reference, exc):
                return None
        except BotoCoreError as exc:
            raise RegistryUnavailable(reference.registry, f"DescribeImages: {exc}") from exc
        for detail in answer.get("imageDetails") or []:
            pushed = detail.get("imagePushedAt")
            return ImageDetails(
                str(detail["imageDigest"]), tuple(detail.get("imageTags") or ()), pushed.isoformat() if pushed else None
            )
        return None

    @staticmethod
    def _account(reference: ImageReference) -> str:
        match = ECR_HOST.fullmatch(reference.registry)
        if match is None:
            raise MalformedManifest(reference.registry, reference, "not an ECR registry host")
        return match["account"]

    @staticmethod
    def _resolved(reference: ImageReference, image: dict[str, Any]) -> Resolved:
        digest = str((image.get("imageId") or {}).get("imageDigest") or "")
        manifest = image.get("imageManifest")
        media_type = str(image.get("imageManifestMediaType") or "")
        if media_type not in MANIFEST_TYPES:
            raise MalformedManifest(
                reference.registry, reference, f"media type {media_type or 'none'!r} is not an image manifest or index"
            )
        if not isinstance(manifest, str):
            raise MalformedManifest(reference.registry, reference, "ECR answered no manifest")
        computed = "sha256:" + hashlib.sha256(manifest.encode("utf-8")).hexdigest()
        if digest != computed or (reference.digest and reference.digest != computed):
            raise DigestMismatch(reference.registry, reference, f"ECR says {digest}, the manifest hashes to {computed}")
        return Resolved(reference, computed, media_type)

    @staticmethod
    def _failed(reference: ImageReference, exc: ClientError) -> Missing:
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "")
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        if code in _MISSING:
            return Missing(reference, f"ECR: {code}")
        if code in _DENIED or status in (401, 403):
            raise RegistryUnauthorized(reference.registry, CREDENTIALS_SOURCE, f"{code or status}") from exc
        raise RegistryUnavailable(reference.registry, f"ECR: {code or status}: {error.get('Message', '')}") from exc


class EcrRegions:
    """`ImageRegistry` for every ECR host: an `EcrRegistry` per region, its client built when first needed
    (`client_for(region)`: boto3's ecr client of that region; the factory's)."""

    def __init__(self, client_for: Callable[[str], Any]) -> None:
        self._client_for = client_for
        self._by_region: dict[str, EcrRegistry] = {}

    def resolve(self, reference: ImageReference) -> Resolution:
        match = ECR_HOST.fullmatch(reference.registry)
        region = match.group("region") if match else ""
        if region not in self._by_region:
            self._by_region[region] = EcrRegistry(self._client_for(region))
        return self._by_region[region].resolve(reference)
