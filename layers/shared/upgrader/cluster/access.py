"""Build an authenticated Kubernetes ApiClient from a ClusterConfig (EKS, kubeconfig, kubeconfig file or URL).

URL mode sends the bearer token of a token file when one is configured (KUBE_TOKEN_FILE), else none.

EKS: the endpoint and CA come from eks:DescribeCluster; the bearer token is minted the way
`aws eks get-token` does it: a presigned STS GetCallerIdentity URL whose signature covers the header
`x-k8s-aws-id: <cluster>`, base64url-encoded behind "k8s-aws-v1.". EKS accepts such a token for
15 minutes; we mint a new one after 14 minutes minus a safety margin.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from upgrader.cluster.discovery import KubernetesFleetReader
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import ClusterConfig, ClusterPermanentError, ClusterTransientError

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - a format marker, not a secret
CLUSTER_ID_HEADER = "x-k8s-aws-id"
PRESIGNED_URL_EXPIRY_SECONDS = 60
TOKEN_LIFETIME_SECONDS = 15 * 60
REMINT_AFTER_SECONDS = 14 * 60 - 60  # well before EKS stops accepting it (clock skew, long calls)
TOKEN_FILE_REREAD_SECONDS = 60  # client-go re-reads a token file every minute

Clock = Callable[[], float]

# Every Kubernetes call is bounded: (connect, read) seconds. A stalled API server costs a worker at
# most this per call, never its whole Lambda timeout (template.yaml sizes the cluster workers'
# timeouts above the SQL statement timeout plus a few of these).
REQUEST_TIMEOUT_SECONDS = (5.0, 15.0)


class BoundedApiClient(k8s.ApiClient):
    """The official ApiClient with a request timeout on every call that does not set its own, and no
    silent retries of a call that timed out or was answered with an error: those surface as
    ClusterTransientError at once, and the state machine's Retry (or the worker's own wait loop)
    decides. Only a connection that could not be made is tried again, twice."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        configuration.retries = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0)
        super().__init__(configuration)

    def call_api(  # type: ignore[no-untyped-def]
        self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None
    ):
        return super().call_api(
            method, url, header_params, body, post_params, _request_timeout or REQUEST_TIMEOUT_SECONDS
        )


# Module scope so that warm Lambda invocations reuse the token: (cluster, region) -> (token, minted at).
_TOKEN_CACHE: dict[tuple[str, str], tuple[str, float]] = {}
_TOKEN_LOCK = threading.Lock()
_GATEWAYS: dict[str, KubernetesClusterGateway] = {}
_GATEWAYS_LOCK = threading.Lock()


def _boto_session(session: Any | None) -> Any:
    if session is not None:
        return session
    import boto3  # late: the url mode (tests, local stack) never needs it

    return boto3.session.Session()


def _region(config: ClusterConfig, session: Any) -> str:
    region = config.region or session.region_name
    if not region:
        raise ClusterPermanentError("no AWS region: set AWS_REGION or ClusterConfig.region")
    return str(region)


def mint_eks_token(session: Any, cluster_name: str, region: str) -> str:
    """A fresh EKS bearer token (no caching). Signing is local: no call to STS is made."""
    sts = session.client("sts", region_name=region, endpoint_url=f"https://sts.{region}.amazonaws.com")

    def add_cluster_header(request: Any, **_: Any) -> None:
        # before-sign: the header is part of the signature, so a token is only good for this cluster.
        request.headers[CLUSTER_ID_HEADER] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = sts.generate_presigned_url(
        "get_caller_identity", Params={}, ExpiresIn=PRESIGNED_URL_EXPIRY_SECONDS, HttpMethod="GET"
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


class EksTokenSource:
    """Hands out a cached EKS token and re-mints it before it expires. `clock` is injectable."""

    def __init__(self, session: Any, cluster_name: str, region: str, *, clock: Clock = time.monotonic) -> None:
        self._session = session
        self._cluster_name = cluster_name
        self._region = region
        self._clock = clock

    def token(self) -> str:
        key = (self._cluster_name, self._region)
        now = self._clock()
        with _TOKEN_LOCK:
            cached = _TOKEN_CACHE.get(key)
            if cached is not None and 0 <= now - cached[1] < REMINT_AFTER_SECONDS:
                return cached[0]
            token = mint_eks_token(self._session, self._cluster_name, self._region)
            _TOKEN_CACHE[key] = (token, now)
            return token

    def refresh_hook(self, configuration: k8s.Configuration) -> None:
        """For `Configuration.refresh_api_key_hook`: runs before every request (cheap when cached)."""
        configuration.api_key["BearerToken"] = self.token()
        configuration.api_key_prefix["BearerToken"] = "Bearer"


def _ca_file(ca_base64: str) -> str:
    """Write the cluster CA once per content (urllib3 wants a file path); /tmp is writable in Lambda."""
    pem = base64.b64decode(ca_base64)
    path = os.path.join(tempfile.gettempdir(), f"eks-ca-{hashlib.sha256(pem).hexdigest()[:16]}.crt")
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.replace(tmp, path)  # atomic: concurrent cold starts never see half a file
    return path


def _aws_call(action: str, call: Callable[[], Any]) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or code in ("ThrottlingException", "TooManyRequestsException", "Throttling"):
            raise ClusterTransientError(f"{action}: {code}") from exc
        raise ClusterPermanentError(f"{action}: {code}: {exc}") from exc
    except BotoCoreError as exc:  # endpoint/connection problems
        raise ClusterTransientError(f"{action}: {exc}") from exc


class FileTokenSource:
    """A bearer token kept in a file (a projected service-account token; KUBE_TOKEN_FILE), read again
    at most every TOKEN_FILE_REREAD_SECONDS as client-go does, so a rotated token is picked up. A file
    that cannot be read later keeps the last token; one that cannot be read at first is an error."""

    def __init__(self, path: str, *, clock: Clock = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._read_at = 0.0

    def token(self) -> str:
        now = self._clock()
        with self._lock:
            if self._token is not None and 0 <= now - self._read_at < TOKEN_FILE_REREAD_SECONDS:
                return self._token
            try:
                with open(self._path, encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as exc:
                if self._token is not None:
                    return self._token
                raise ClusterPermanentError(f"cannot read the Kubernetes token file {self._path}: {exc}") from exc
            if not token:
                if self._token is not None:
                    return self._token
                raise ClusterPermanentError(f"the Kubernetes token file {self._path} is empty")
            self._token, self._read_at = token, now
            return token

    def refresh_hook(self, configuration: k8s.Configuration) -> None:
        """For `Configuration.refresh_api_key_hook`: runs before every request (cheap when cached)."""
        configuration.api_key["BearerToken"] = self.token()
        configuration.api_key_prefix["BearerToken"] = "Bearer"


def build_api_client(
    config: ClusterConfig, *, session: Any | None = None, clock: Clock = time.monotonic
) -> k8s.ApiClient:
    """An ApiClient for the configured cluster. `session` is a boto3 Session (default: a new one)."""
    if config.mode == "url":
        assert config.api_url is not None  # guaranteed by ClusterConfig's validator
        configuration = k8s.Configuration(host=config.api_url.rstrip("/"))
        if config.ca_file:
            configuration.ssl_ca_cert = config.ca_file
        if config.token_file:
            token_file = FileTokenSource(config.token_file, clock=clock)
            token_file.refresh_hook(configuration)
            configuration.refresh_api_key_hook = token_file.refresh_hook  # type: ignore[assignment]
        return BoundedApiClient(configuration)

    if config.mode == "kubeconfig-file":
        assert config.kubeconfig_path is not None  # guaranteed by ClusterConfig's validator
        configuration = k8s.Configuration()
        try:
            k8s_config.load_kube_config(
                config_file=config.kubeconfig_path, client_configuration=configuration, persist_config=False
            )
        except (k8s_config.ConfigException, OSError) as exc:
            raise ClusterPermanentError(f"unusable kubeconfig file {config.kubeconfig_path}: {exc}") from exc
        return BoundedApiClient(configuration)

    boto = _boto_session(session)
    if config.mode == "kubeconfig":
        secrets = boto.client("secretsmanager", region_name=_region(config, boto))
        secret = _aws_call(
            "read kubeconfig secret",
            lambda: secrets.get_secret_value(SecretId=config.kubeconfig_secret_arn),
        )
        text = secret.get("SecretString") or base64.b64decode(secret.get("SecretBinary") or b"").decode()
        try:
            kubeconfig = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ClusterPermanentError("the kubeconfig secret is not valid YAML") from exc
        if not isinstance(kubeconfig, dict):
            raise ClusterPermanentError("the kubeconfig secret does not hold a kubeconfig mapping")
        configuration = k8s.Configuration()
        try:
            k8s_config.load_kube_config_from_dict(
                config_dict=kubeconfig, client_configuration=configuration, persist_config=False
            )
        except k8s_config.ConfigException as exc:
            raise ClusterPermanentError(f"unusable kubeconfig: {exc}") from exc
        return BoundedApiClient(configuration)

    # eks
    assert config.eks_cluster_name is not None
    region = _region(config, boto)
    eks = boto.client("eks", region_name=region)
    cluster = _aws_call("describe EKS cluster", lambda: eks.describe_cluster(name=config.eks_cluster_name))
    cluster = cluster["cluster"]
    configuration = k8s.Configuration(host=cluster["endpoint"])
    configuration.ssl_ca_cert = _ca_file(cluster["certificateAuthority"]["data"])
    configuration.verify_ssl = True
    tokens = EksTokenSource(boto, config.eks_cluster_name, region, clock=clock)
    tokens.refresh_hook(configuration)
    configuration.refresh_api_key_hook = tokens.refresh_hook  # type: ignore[assignment]
    return BoundedApiClient(configuration)


def build_cluster_gateway(config: ClusterConfig, *, session: Any | None = None) -> KubernetesClusterGateway:
    """The process-wide gateway for `config` (built on first use, then reused by warm invocations)."""
    key = config.model_dump_json()
    with _GATEWAYS_LOCK:
        gateway = _GATEWAYS.get(key)
        if gateway is None:
            gateway = KubernetesClusterGateway(build_api_client(config, session=session), config)
            _GATEWAYS[key] = gateway
        return gateway


def build_fleet_reader(config: ClusterConfig, *, session: Any | None = None) -> KubernetesFleetReader:
    """A fleet reader for discovery (a new one per sync: it counts the sync's requests)."""
    return KubernetesFleetReader(build_api_client(config, session=session), config)


def clear_caches() -> None:
    """Forget cached tokens and gateways (tests; a rotated kubeconfig secret)."""
    with _TOKEN_LOCK:
        _TOKEN_CACHE.clear()
    with _GATEWAYS_LOCK:
        _GATEWAYS.clear()
