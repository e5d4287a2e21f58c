"""How a deploy's pre-flight reaches the registries (upgrader.factory.image_registry): ECR's hosts through ECR
(moto) with a client of the host's region, every other host through the distribution API with the basic
credentials of IMAGE_REGISTRY_SECRET_ARN (moto's Secrets Manager)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from upgrader import factory
from upgrader.images.credentials import read_registry_credentials
from upgrader.images.references import parse_reference
from upgrader.images.registry import Missing, RegistryUnauthorized, Resolved
from upgrader.infra.settings import SettingsError

from tests.images.test_ecr_registry import ACCOUNT, REPOSITORY, manifest, put
from tests.support.registry_proxy import ProxyRules


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("IMAGE_REGISTRY_SECRET_ARN", raising=False)
    with mock_aws():
        factory.reset()
        yield
    factory.reset()


def test_an_ecr_host_is_asked_through_ecr_in_its_own_region(aws):
    client = boto3.client("ecr", region_name="eu-west-1")
    client.create_repository(repositoryName=REPOSITORY)
    digest = put(client, "v1.2.0", manifest("api 1.2.0"))
    host = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"

    registry = factory.image_registry()

    found = registry.resolve(parse_reference(f"{host}/{REPOSITORY}:v1.2.0"))
    assert isinstance(found, Resolved) and found.digest == digest
    assert isinstance(registry.resolve(parse_reference(f"{host}/{REPOSITORY}:v9")), Missing)


def test_other_hosts_get_the_secrets_credentials_and_a_refusal_names_the_secret(
    aws, registry, push, proxy, monkeypatch
):
    push("wired/api", "v1.2.0", b"wired")
    front = proxy(ProxyRules(auth="basic", users={"ci": "right"}))
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(
        Name="registries", SecretString=json.dumps({front.host: {"username": "ci", "password": "right"}})
    )["ARN"]
    monkeypatch.setenv("IMAGE_REGISTRY_SECRET_ARN", arn)
    factory.reset()

    assert isinstance(factory.image_registry().resolve(parse_reference(f"{front.host}/wired/api:v1.2.0")), Resolved)

    secrets.put_secret_value(
        SecretId=arn, SecretString=json.dumps({front.host: {"username": "ci", "password": "wrong"}})
    )
    factory.reset()
    with pytest.raises(
        RegistryUnauthorized,
        match=f"the Secrets Manager secret {arn} \\(IMAGE_REGISTRY_SECRET_ARN\\), key {front.host}",
    ) as refused:
        factory.image_registry().resolve(parse_reference(f"{front.host}/wired/api:v1.2.0"))
    assert "wrong" not in str(refused.value)


def test_a_secret_that_does_not_exist_means_no_credentials_and_a_malformed_one_names_the_setting(aws):
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    assert read_registry_credentials(secrets, "arn:aws:secretsmanager:us-east-1:123456789012:secret:none") == {}
    arn = secrets.create_secret(Name="bad", SecretString=json.dumps({"r.example": {"username": "u"}}))["ARN"]
    with pytest.raises(
        SettingsError, match="IMAGE_REGISTRY_SECRET_ARN .* the entry of 'r.example' has no username and password"
    ):
        read_registry_credentials(secrets, arn)
