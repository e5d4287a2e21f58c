"""How the configured Prometheus authenticates (`configured.providers_for`): a bearer token read from Secrets
Manager (moto; the secret's string or its JSON `token`), never logged nor in a measurement; a secret that cannot
be read measures nothing (inconclusive, the plan shows why); SigV4 for Amazon Managed Prometheus; not both."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from upgrader.analysis.configured import providers_for
from upgrader.analysis.judgement import judge
from upgrader.analysis.spec import AnalysisSpec
from upgrader.infra.settings import Settings, SettingsError

from tests.analysis.conftest import target_for
from tests.analysis.test_analysis_request import CHECK

REGION = "us-east-1"
TOKEN = "prom-token-7f3a9c"  # noqa: S105 (a test's stand-in)
SPEC = AnalysisSpec.model_validate({"checks": [CHECK]})
ANSWER = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.01"]}]}}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def settings(url: str, **more: Any) -> Settings:
    return Settings.from_env({"AWS_REGION": REGION, "ANALYSIS_PROMETHEUS_URL": url, **more})


def measure(found: dict[str, Any]) -> Any:
    return found["prometheus"].measure(SPEC.checks[0], target_for("cust_a"))


@pytest.mark.parametrize("stored", [TOKEN, json.dumps({"token": TOKEN})], ids=["string", "json"])
def test_the_bearer_token_comes_from_secrets_manager_and_is_never_logged(secrets, scripted_server, caplog, stored):
    arn = secrets.create_secret(Name="analysis/prometheus", SecretString=stored)["ARN"]
    scripted_server.answer("/api/v1/query", body=ANSWER)
    caplog.set_level(logging.DEBUG)
    measured = measure(providers_for(SPEC, settings(scripted_server.url, ANALYSIS_PROMETHEUS_TOKEN_SECRET_ARN=arn)))
    assert measured.value == 0.01 and measured.error is None
    assert [headers.get("Authorization") for _, headers in scripted_server.requests] == [f"Bearer {TOKEN}"]
    scripted_server.answer("/api/v1/query", 500, {"status": "error", "errorType": "internal"})
    failed = measure(providers_for(SPEC, settings(scripted_server.url, ANALYSIS_PROMETHEUS_TOKEN_SECRET_ARN=arn)))
    assert failed.value is None and TOKEN not in (failed.error or "") and TOKEN not in failed.query
    # nothing of ours logs it (botocore's own wire log at DEBUG shows the response, as for every secret it reads)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(("botocore", "urllib3"))]
    assert not any(TOKEN in message for message in ours), ours


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        (None, "ResourceNotFoundException"),
        (json.dumps({"user": "x"}), "PrometheusTokenMissing"),
        ("   ", "PrometheusTokenMissing"),
    ],
    ids=["no such secret", "json without token", "empty"],
)
def test_a_token_that_cannot_be_read_measures_nothing_never_a_pass(secrets, scripted_server, stored, why):
    name = "analysis/prometheus"
    if stored is not None:
        secrets.create_secret(Name=name, SecretString=stored)
    scripted_server.answer("/api/v1/query", body=ANSWER)
    measured = measure(providers_for(SPEC, settings(scripted_server.url, ANALYSIS_PROMETHEUS_TOKEN_SECRET_ARN=name)))
    assert measured.value is None and scripted_server.requests == []  # nothing asked without the token
    assert (measured.error or "").startswith("the Prometheus bearer token could not be read: ") and why in (
        measured.error or ""
    )
    assert "user" not in (measured.error or "")  # what the secret holds is not shown
    assert judge(SPEC.checks[0], [measured]).verdict == "inconclusive"


def test_sigv4_signs_for_amazon_managed_prometheus_with_the_functions_credentials(secrets, scripted_server):
    scripted_server.answer("/workspaces/ws-1/api/v1/query", body=ANSWER)
    found = providers_for(SPEC, settings(f"{scripted_server.url}/workspaces/ws-1", ANALYSIS_PROMETHEUS_SIGV4="true"))
    assert measure(found).value == 0.01
    [(_, headers)] = scripted_server.requests
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")  # moto's stand-in credentials
    assert f"/{REGION}/aps/aws4_request" in headers["Authorization"]


def test_sigv4_and_a_bearer_token_together_are_refused_at_cold_start():
    with pytest.raises(SettingsError, match="not both"):
        settings("https://prometheus.example", ANALYSIS_PROMETHEUS_SIGV4="true",
                 ANALYSIS_PROMETHEUS_TOKEN_SECRET_ARN="analysis/prometheus")  # fmt: skip
