"""Prometheus over its HTTP API: `/api/v1/query` (an instant value) and `/api/v1/query_range` (the values
over a window), with a bearer token, or signed with SigV4 for Amazon Managed Prometheus (service `aps`).

A query must answer one number: a scalar, or a vector of exactly one series. No series is "no data";
several series, NaN, a `status` other than success, a timeout or a 5xx are errors: all inconclusive."""

from __future__ import annotations

import math
import statistics
import urllib.parse
from datetime import datetime
from typing import Any

from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.providers import DEFAULT_TIMEOUT_SECONDS, Target, bounded_timeout, no_value, value
from upgrader.analysis.providers.web import FetchError, ProviderUnavailable, Signer, get_json
from upgrader.analysis.templating import TemplateError, render_promql


class PrometheusProvider:
    def __init__(
        self,
        base_url: str,
        *,
        bearer_token: str | None = None,
        signer: Signer | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError("the Prometheus URL must be http:// or https://")
        if bearer_token is not None and signer is not None:
            raise ValueError("a bearer token or SigV4, not both")
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
        self._signer = signer
        self._timeout = bounded_timeout(timeout)

    def measure(self, check: AnalysisCheck, target: Target) -> Measurement:
        assert isinstance(check.query, str), "a prometheus check's query is PromQL"
        try:
            query = render_promql(check.query, target.values)
        except TemplateError as exc:
            return no_value(check, target, check.query, f"template: {exc}")
        try:
            return value(check, target, query, self.instant(query, target.values.now))
        except FetchError as exc:
            return no_value(check, target, query, str(exc), retryable=isinstance(exc, ProviderUnavailable))

    def instant(self, query: str, at: datetime) -> float:
        """The one number `query` gives at `at`; FetchError otherwise."""
        data = self._get("query", {"query": query, "time": f"{at.timestamp():.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return _number(result[1] if isinstance(result, list) and len(result) == 2 else None)
        if kind != "vector" or not isinstance(result, list):
            raise FetchError(f"unexpected result type {kind!r}")
        return _number(_one_series(result).get("value", [None, None])[1])

    def over_range(self, query: str, start: datetime, end: datetime, step_seconds: int) -> list[float]:
        """The values of `query`'s one series from `start` to `end` every `step_seconds` (NaN dropped)."""
        data = self._get("query_range", {"query": query, "start": f"{start.timestamp():.3f}",
                                         "end": f"{end.timestamp():.3f}", "step": str(step_seconds)})  # fmt: skip
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise FetchError(f"unexpected result type {data.get('resultType')!r}")
        points = _one_series(data["result"]).get("values") or []
        found = [float(v) for _, v in points if _finite(v)]
        if not found:
            raise FetchError("no data")
        return found

    def mean_over_range(self, query: str, start: datetime, end: datetime, step_seconds: int) -> float:
        return statistics.fmean(self.over_range(query, start, end, step_seconds))

    def _get(self, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self._base}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        answer = get_json(url, timeout=self._timeout, headers=self._headers, signer=self._signer)
        if (
            not isinstance(answer, dict)
            or answer.get("status") != "success"
            or not isinstance(answer.get("data"), dict)
        ):
            kind = answer.get("errorType") if isinstance(answer, dict) else None
            raise FetchError(f"Prometheus answered no success ({kind or 'unexpected shape'})")
        data: dict[str, Any] = answer["data"]
        return data


def sigv4_signer(region: str, session: Any = None, service: str = "aps") -> Signer:
    """Headers signed with SigV4 (botocore's SigV4Auth) from the session's credentials: Amazon Managed
    Prometheus' query API (`https://aps-workspaces.<region>.amazonaws.com/workspaces/<id>`)."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    source = session or botocore.session.Session()

    def sign(url: str, headers: dict[str, str]) -> dict[str, str]:
        credentials = source.get_credentials()
        if credentials is None:
            raise FetchError("no AWS credentials to sign the Prometheus query")
        request = AWSRequest(method="GET", url=url, headers=dict(headers))
        SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
        return dict(request.headers.items())

    return sign


def _one_series(result: list[Any]) -> dict[str, Any]:
    if not result:
        raise FetchError("no data")
    if len(result) > 1:
        raise FetchError(f"{len(result)} series: the query must answer one (aggregate with sum, avg...)")
    series = result[0]
    if not isinstance(series, dict):
        raise FetchError("unexpected series shape")
    return series


def _finite(raw: Any) -> bool:
    try:
        return math.isfinite(float(raw))
    except (TypeError, ValueError):
        return False


def _number(raw: Any) -> float:
    if not _finite(raw):
        raise FetchError("no data (NaN or not a number)" if raw is not None else "no value")
    return float(raw)
