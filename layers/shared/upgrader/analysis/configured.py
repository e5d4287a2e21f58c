"""The providers a deployment is configured with (settings), and the plan's one run of each query."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.providers import DEFAULT_TIMEOUT_SECONDS, MetricProvider, Target, bounded_timeout, no_value
from upgrader.analysis.rounds import Customer, targets
from upgrader.analysis.spec import AnalysisSpec
from upgrader.infra.settings import Settings

PREVIEW_CONTROL = 5  # control customers the plan measures
PREVIEW_TIMEOUT_SECONDS = 5.0


def providers_for(
    spec: AnalysisSpec, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> dict[str, MetricProvider]:
    """The providers the checks name, as configured; one not configured is left out (its checks measure
    nothing: inconclusive, never a pass)."""
    wanted = {check.provider for check in spec.checks}
    found: dict[str, MetricProvider] = {}
    if "prometheus" in wanted and settings.analysis_prometheus_url:
        from upgrader.analysis.providers.prometheus import PrometheusProvider, sigv4_signer

        signer = sigv4_signer(settings.aws_region or "us-east-1") if settings.analysis_prometheus_sigv4 else None
        secret = settings.analysis_prometheus_token_secret_arn
        try:
            token = prometheus_token(secrets_client(settings.aws_region, timeout), secret) if secret else None
        except Exception as exc:  # noqa: BLE001 (any failure to read the secret: the checks measure nothing)
            found["prometheus"] = Unmeasurable(f"the Prometheus bearer token could not be read: {_why(exc)}")
        else:
            found["prometheus"] = PrometheusProvider(
                settings.analysis_prometheus_url, bearer_token=token, signer=signer, timeout=timeout
            )
    if "cloudwatch" in wanted:
        from upgrader.analysis.providers.cloudwatch import CloudWatchProvider, cloudwatch_client

        found["cloudwatch"] = CloudWatchProvider(cloudwatch_client(settings.aws_region, timeout))
    if "http" in wanted:
        from upgrader.analysis.providers.http import HttpProvider

        found["http"] = HttpProvider(timeout=timeout)
    return found


def secrets_client(region: str | None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Any:
    """A Secrets Manager client whose calls are bounded (connect and read timeouts, two attempts)."""
    import boto3
    from botocore.config import Config

    seconds = bounded_timeout(timeout)
    config = Config(connect_timeout=seconds, read_timeout=seconds, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client("secretsmanager", region_name=region, config=config)


def prometheus_token(client: Any, secret_id: str) -> str:
    """Prometheus' bearer token from Secrets Manager: the secret's string, or its `token` key when JSON. Read
    at each gate step (a rotated token is used at once); never logged, never in a measurement's error.
    A secret that cannot be read raises: the step fails, and the gate records it inconclusive."""
    text = str(client.get_secret_value(SecretId=secret_id)["SecretString"]).strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("token") or "")
        except (ValueError, AttributeError):
            text = ""
    if not text:
        raise PrometheusTokenMissing(f"the secret {secret_id} holds no bearer token (its string, or a JSON token key)")
    return text


class PrometheusTokenMissing(ValueError):
    """The token's secret is empty, or JSON without a `token` key (what it holds is not shown)."""


def _why(exc: Exception) -> str:
    """An AWS error's code (never the secret), or the error's class and message for ours."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code:
        return str(code)
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, PrometheusTokenMissing) else type(exc).__name__


class Unmeasurable:
    """A provider that cannot ask (its credentials could not be read): every measurement carries why, so the
    gate is inconclusive and the plan shows the reason; never a pass."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def measure(self, check: AnalysisCheck, target: Target) -> Measurement:
        return no_value(check, target, str(check.query), self.reason)


class GiveUpWhenDown:
    """A provider that stops asking once `limit` answers in a row were missing (timeout, unreachable, 5xx): the
    rest of the round carries its error at once instead of waiting out every customer's retries (a gate step
    stays within its Lambda's time; the round is inconclusive either way)."""

    def __init__(self, provider: MetricProvider, limit: int = 3) -> None:
        self._provider, self._limit, self._misses = provider, limit, 0
        self._down: str | None = None

    def measure(self, check: AnalysisCheck, target: Target) -> Measurement:
        if self._down is not None:
            return no_value(check, target, str(check.query), f"not asked: the provider did not answer ({self._down})")
        measured = self._provider.measure(check, target)
        self._misses = self._misses + 1 if measured.retryable else 0
        if self._misses >= self._limit:
            self._down = measured.error or "no answer"
        return measured


def gate_providers(spec: AnalysisSpec, settings: Settings) -> dict[str, MetricProvider]:
    """The providers of the gate between waves: each gives up for the round once it is down."""
    return {name: GiveUpWhenDown(provider) for name, provider in providers_for(spec, settings).items()}


def preview(
    spec: AnalysisSpec,
    component: str,
    canary: Customer | None,
    control: Sequence[Customer],
    providers: Mapping[str, MetricProvider],
    now: datetime,
) -> list[Measurement]:
    """Each check once, for the first canary customer and the control sample (at most PREVIEW_CONTROL of it),
    over the last interval: what the plan shows. No retries, and a provider that did not answer is asked
    nothing more (its later measurements carry its error), so a plan answers within the API's time."""
    since = now - timedelta(seconds=spec.interval_seconds)
    upgraded = [canary] if canary is not None else []
    found: list[Measurement] = []
    down: dict[str, str] = {}
    for check in spec.checks:
        provider = providers.get(check.provider)
        for target in targets(component, upgraded, control[:PREVIEW_CONTROL], since, now):
            problem = down.get(check.provider) or (None if provider else f"no {check.provider} provider configured")
            if problem or provider is None:
                found.append(no_value(check, target, str(check.query), problem or "no provider"))
                continue
            measured = provider.measure(check, target)
            if measured.retryable:
                down[check.provider] = measured.error or "no answer"
            found.append(measured)
    return found
