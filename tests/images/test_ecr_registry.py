"""The ECR adapter (upgrader.images.ecr) against moto's ECR: BatchGetImage resolves, DescribeImages describes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from upgrader.images.ecr import EcrRegistry, is_ecr_host
from upgrader.images.preflight import customer_images, run_preflight
from upgrader.images.references import parse_reference
from upgrader.images.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    DigestMismatch,
    Missing,
    RegistryUnauthorized,
    RegistryUnavailable,
    Resolved,
)

ACCOUNT = "123456789012"
HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
REPOSITORY = "customer-stack/api"


def manifest(content: str, media_type: str = OCI_MANIFEST) -> str:
    body: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if media_type == OCI_INDEX:
        body["manifests"] = [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + "2" * 64, "size": 10,
                              "platform": {"os": "linux", "architecture": "arm64"}}]  # fmt: skip
    else:
        body["config"] = {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "1" * 64,
            "size": 2,
        }
        body["layers"] = [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": f"sha256:{hashlib.sha256(content.encode()).hexdigest()}",
                "size": 5,
            }
        ]
    return json.dumps(body)  # json.dumps' own separators: moto answers the manifest re-serialized that way


@pytest.fixture
def ecr(monkeypatch) -> Iterator[Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("ecr", region_name="us-east-1")
        client.create_repository(repositoryName=REPOSITORY)
        yield client


def put(client: Any, tag: str, text: str, media_type: str = OCI_MANIFEST) -> str:
    """Push a manifest as the docker client does: ECR's digest is the sha256 of the manifest's bytes."""
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    client.put_image(repositoryName=REPOSITORY, imageManifest=text, imageTag=tag, imageDigest=digest,
                     imageManifestMediaType=media_type)  # fmt: skip
    return digest


def test_ecr_hosts_are_recognised():
    assert is_ecr_host(HOST) and is_ecr_host(f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com")
    assert not is_ecr_host("registry.example.com") and not is_ecr_host(
        f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.evil.io"
    )


def test_a_tag_resolves_to_its_manifest_digest(ecr):
    digest = put(ecr, "v1.2.0", manifest("api 1.2.0"))
    answer = EcrRegistry(ecr).resolve(parse_reference(f"{HOST}/{REPOSITORY}:v1.2.0"))
    assert isinstance(answer, Resolved) and answer.digest == digest and answer.media_type == OCI_MANIFEST


def test_a_multi_arch_index_resolves_to_the_index_digest(ecr):
    digest = put(ecr, "v2.0.0", manifest("", OCI_INDEX), OCI_INDEX)
    answer = EcrRegistry(ecr).resolve(parse_reference(f"{HOST}/{REPOSITORY}:v2.0.0"))
    assert isinstance(answer, Resolved) and answer.digest == digest and answer.multi_arch


def test_a_missing_tag_or_repository_is_missing(ecr):
    put(ecr, "v1.2.0", manifest("api 1.2.0"))
    adapter = EcrRegistry(ecr)
    assert isinstance(adapter.resolve(parse_reference(f"{HOST}/{REPOSITORY}:v1.2.1")), Missing)
    assert isinstance(adapter.resolve(parse_reference(f"{HOST}/customer-stack/nothing:v1.2.0")), Missing)


def test_a_moved_tag_resolves_to_the_new_digest(ecr):
    first = put(ecr, "v3.0.0", manifest("first"))
    adapter = EcrRegistry(ecr)
    assert adapter.resolve(parse_reference(f"{HOST}/{REPOSITORY}:v3.0.0")).digest == first  # type: ignore[union-attr]
    second = put(ecr, "v3.0.0", manifest("second"))
    assert adapter.resolve(parse_reference(f"{HOST}/{REPOSITORY}:v3.0.0")).digest == second != first  # type: ignore[union-attr]


def test_a_digest_that_is_not_the_manifest_s_hash_is_refused(ecr):
    # moto, given no digest, makes one of the layers' digests: not what a node pulling by digest would find.
    ecr.put_image(
        repositoryName=REPOSITORY, imageManifest=manifest("x"), imageTag="v4.0.0", imageManifestMediaType=OCI_MANIFEST
    )
    with pytest.raises(DigestMismatch):
        EcrRegistry(ecr).resolve(parse_reference(f"{HOST}/{REPOSITORY}:v4.0.0"))


def test_describe_images_gives_digest_tags_and_push_time(ecr):
    digest = put(ecr, "v1.2.0", manifest("api 1.2.0"))
    details = EcrRegistry(ecr).describe(parse_reference(f"{HOST}/{REPOSITORY}:v1.2.0"))
    assert details is not None and details.digest == digest and details.tags == ("v1.2.0",) and details.pushed_at
    assert EcrRegistry(ecr).describe(parse_reference(f"{HOST}/{REPOSITORY}:v9")) is None


def test_the_preflight_asks_ecr_once_per_distinct_image(ecr):
    put(ecr, "v1.0.0", manifest("old"))
    put(ecr, "v2.0.0", manifest("new"))
    adapter = EcrRegistry(ecr)
    customers = [customer_images(f"c-{n}", f"{HOST}/{REPOSITORY}", "v2.0.0", "v1.0.0") for n in range(1000)]
    result = run_preflight(customers, adapter)
    assert adapter.requests == 2 and len(result.targets) == len(result.rollbacks) == 1000


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [("AccessDeniedException", 400, RegistryUnauthorized), ("ServerException", 500, RegistryUnavailable),
     ("ThrottlingException", 400, RegistryUnavailable)],
)  # fmt: skip
def test_ecr_errors_are_named(code, status, error):
    client = boto3.client("ecr", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    with Stubber(client) as stub:
        stub.add_client_error("batch_get_image", service_error_code=code, http_status_code=status)
        with pytest.raises(error) as caught:
            EcrRegistry(client).resolve(parse_reference(f"{HOST}/{REPOSITORY}:v1"))
    if error is RegistryUnauthorized:
        assert "IAM role" in caught.value.message and caught.value.http_status == 502
