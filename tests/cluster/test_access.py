"""Cluster access: EKS token minting and caching, kubeconfig from Secrets Manager, plain URL."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws
from upgrader.cluster import access
from upgrader.cluster.types import ClusterConfig, ClusterPermanentError
from upgrader.infra import names

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    access.clear_caches()
    yield
    access.clear_caches()


@pytest.fixture
def session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="AKIAEXAMPLEEXAMPLE", aws_secret_access_key="secret/example", region_name=REGION
    )


def decode(token: str) -> urllib.parse.SplitResult:
    assert token.startswith("k8s-aws-v1.")
    body = token.removeprefix("k8s-aws-v1.")
    assert "=" not in body  # padding stripped, like aws eks get-token
    return urllib.parse.urlsplit(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())


def test_eks_token_is_a_presigned_get_caller_identity_bound_to_the_cluster(session: boto3.Session) -> None:
    url = decode(access.mint_eks_token(session, "prod-eu", REGION))
    query = dict(urllib.parse.parse_qsl(url.query))
    assert url.scheme == "https"
    assert url.hostname == f"sts.{REGION}.amazonaws.com"
    assert query["Action"] == "GetCallerIdentity"
    assert query["Version"] == "2011-06-15"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Credential"].startswith("AKIAEXAMPLEEXAMPLE/")
    assert f"/{REGION}/sts/aws4_request" in query["X-Amz-Credential"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"].split(";")
    assert "host" in query["X-Amz-SignedHeaders"].split(";")
    assert len(query["X-Amz-Signature"]) == 64


def test_eks_token_under_moto(session: boto3.Session) -> None:
    with mock_aws():
        url = decode(access.mint_eks_token(boto3.Session(region_name=REGION), "c1", REGION))
    assert "x-k8s-aws-id" in dict(urllib.parse.parse_qsl(url.query))["X-Amz-SignedHeaders"]


def test_token_is_cached_and_reminted_before_fourteen_minutes(
    session: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    minted: list[str] = []

    def fake_mint(sess: object, cluster: str, region: str) -> str:
        minted.append(cluster)
        return f"k8s-aws-v1.token-{len(minted)}"

    monkeypatch.setattr(access, "mint_eks_token", fake_mint)
    now = [1000.0]
    source = access.EksTokenSource(session, "c1", REGION, clock=lambda: now[0])
    assert source.token() == "k8s-aws-v1.token-1"
    now[0] += 12 * 60
    assert source.token() == "k8s-aws-v1.token-1"
    # A second source in the same process (a rebuilt client) shares the module-level cache.
    assert access.EksTokenSource(session, "c1", REGION, clock=lambda: now[0]).token() == "k8s-aws-v1.token-1"
    now[0] += 90  # 13.5 minutes after minting: past the re-mint threshold, before the 15-minute expiry
    assert source.token() == "k8s-aws-v1.token-2"
    assert access.REMINT_AFTER_SECONDS < 14 * 60
    assert minted == ["c1", "c1"]


def test_url_mode(session: boto3.Session) -> None:
    client = access.build_api_client(ClusterConfig(mode="url", api_url="http://127.0.0.1:8001/"))
    assert client.configuration.host == "http://127.0.0.1:8001"
    assert client.configuration.auth_settings() == {}


def test_kubeconfig_mode_reads_secrets_manager() -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ops",
        "clusters": [
            {"name": "k", "cluster": {"server": "https://kube.example.com:6443", "insecure-skip-tls-verify": False}}
        ],
        "users": [{"name": "u", "user": {"token": "s3cr3t-token"}}],
        "contexts": [{"name": "ops", "context": {"cluster": "k", "user": "u"}}],
    }
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        arn = sm.create_secret(Name="kubeconfig", SecretString=yaml.safe_dump(kubeconfig))["ARN"]
        config = ClusterConfig(mode="kubeconfig", kubeconfig_secret_arn=arn, region=REGION)
        client = access.build_api_client(config, session=boto3.Session(region_name=REGION))
    assert client.configuration.host == "https://kube.example.com:6443"
    assert client.configuration.auth_settings()["BearerToken"]["value"] == "Bearer s3cr3t-token"


def test_kubeconfig_mode_rejects_garbage() -> None:
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        arn = sm.create_secret(Name="kubeconfig", SecretString="just a string")["ARN"]
        config = ClusterConfig(mode="kubeconfig", kubeconfig_secret_arn=arn, region=REGION)
        with pytest.raises(ClusterPermanentError):
            access.build_api_client(config, session=boto3.Session(region_name=REGION))


def test_eks_mode_uses_describe_cluster_and_a_refreshing_token() -> None:
    now = [0.0]
    with mock_aws():
        eks = boto3.client("eks", region_name=REGION)
        eks.create_cluster(
            name="prod-eu", roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": ["subnet-1"]}
        )
        described = eks.describe_cluster(name="prod-eu")["cluster"]
        config = ClusterConfig(mode="eks", eks_cluster_name="prod-eu", region=REGION)
        client = access.build_api_client(config, session=boto3.Session(region_name=REGION), clock=lambda: now[0])
        first = client.configuration.auth_settings()["BearerToken"]["value"]
        now[0] += 14 * 60
        second = client.configuration.auth_settings()["BearerToken"]["value"]
    assert client.configuration.host == described["endpoint"]
    with open(client.configuration.ssl_ca_cert, "rb") as handle:
        assert handle.read() == base64.b64decode(described["certificateAuthority"]["data"])
    assert first.startswith("Bearer k8s-aws-v1.") and second.startswith("Bearer k8s-aws-v1.")
    assert dict(urllib.parse.parse_qsl(decode(first.removeprefix("Bearer ")).query))["Action"] == ("GetCallerIdentity")
    assert access._TOKEN_CACHE[("prod-eu", REGION)][1] == 14 * 60  # re-minted at the later time


def test_eks_mode_without_the_cluster_is_permanent() -> None:
    with mock_aws():
        config = ClusterConfig(mode="eks", eks_cluster_name="nope", region=REGION)
        with pytest.raises(ClusterPermanentError):
            access.build_api_client(config, session=boto3.Session(region_name=REGION))


def test_config_requires_the_target_of_its_mode() -> None:
    with pytest.raises(ValueError, match="eks_cluster_name"):
        ClusterConfig(mode="eks")
    with pytest.raises(ValueError, match="api_url"):
        ClusterConfig(mode="url")


def test_gateway_is_built_once_per_config() -> None:
    config = ClusterConfig(mode="url", api_url="http://127.0.0.1:8001")
    assert access.build_cluster_gateway(config) is access.build_cluster_gateway(config)
    other = ClusterConfig(mode="url", api_url="http://127.0.0.1:8002")
    assert access.build_cluster_gateway(other) is not access.build_cluster_gateway(config)


def test_config_from_settings_merges_chart_refs() -> None:
    from upgrader.infra.settings import Settings

    settings = Settings.from_env(
        {
            "CLUSTER_MODE": "url",
            "KUBE_API_URL": "http://k:1",
            "CHART_REFS": json.dumps({"api": "oci://r/charts/api"}),
            "JOB_SERVICE_ACCOUNT": "runner",
        }
    )
    config = ClusterConfig.from_settings(settings)
    assert config.api_url == "http://k:1" and config.service_account == "runner"
    assert config.chart_refs["api"] == "oci://r/charts/api"
    assert config.chart_refs["dashboard"].startswith("oci://")
    assert config.helm_image == names.HELM_IMAGE


def test_every_kubernetes_call_has_a_request_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """An API server that accepts the connection and never answers costs a call the timeout, not forever."""
    import socket
    import threading
    import time

    from upgrader.cluster import access
    from upgrader.cluster.jobs import KubernetesClusterGateway
    from upgrader.cluster.types import ClusterConfig, ClusterTransientError

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setattr(access, "REQUEST_TIMEOUT_SECONDS", (1.0, 1.0))
    config = ClusterConfig(mode="url", api_url=f"http://127.0.0.1:{silent.getsockname()[1]}")
    client = access.build_api_client(config)
    gateway = KubernetesClusterGateway(client, config)
    try:
        started = time.monotonic()
        with pytest.raises(ClusterTransientError, match="timed out|Read timed out|TimeoutError"):
            gateway.release_status("customer-a", "stack")
        assert time.monotonic() - started < 3  # one read timeout, not retried behind our back
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        silent.close()


def test_url_mode_sends_the_token_of_its_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    config = ClusterConfig(mode="url", api_url="http://127.0.0.1:8001", token_file=str(token_file))
    client = access.build_api_client(config)
    assert client.configuration.get_api_key_with_prefix("BearerToken") == "Bearer first-token"
    assert (
        access.build_api_client(ClusterConfig(mode="url", api_url="http://127.0.0.1:8001")).configuration.api_key == {}
    )


def test_a_token_file_is_read_again_after_a_minute_and_survives_a_bad_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("one")
    now = [0.0]
    source = access.FileTokenSource(str(token_file), clock=lambda: now[0])
    assert source.token() == "one"
    token_file.write_text("two")  # rotated (a projected token is)
    now[0] = 59.0
    assert source.token() == "one"
    now[0] = 61.0
    assert source.token() == "two"
    token_file.unlink()
    now[0] = 200.0
    assert source.token() == "two"  # kept while the file cannot be read


def test_a_missing_or_empty_token_file_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterPermanentError, match="cannot read the Kubernetes token file"):
        access.FileTokenSource(str(tmp_path / "absent")).token()
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ClusterPermanentError, match="is empty"):
        access.FileTokenSource(str(tmp_path / "empty")).token()


def test_kube_token_file_reaches_the_cluster_config() -> None:
    from upgrader.infra.settings import Settings

    settings = Settings.from_env({"KUBE_API_URL": "http://k:1", "KUBE_TOKEN_FILE": "/var/run/token"})
    assert ClusterConfig.from_settings(settings).token_file == "/var/run/token"
