"""CloudWatch: `GetMetricData` (metric math allowed) over the window since the wave, or the alarms' state
(`DescribeAlarms`).

- Metric data: the latest datapoint of the one query with `returnData` true; none is "no data".
- Alarms: the number of the named alarms in state ALARM (a failure condition `{"op": ">=", "value": 1}`
  halts on any); an alarm that does not exist is an error, one in INSUFFICIENT_DATA is "no data".
A throttled, denied or failed call is an error: inconclusive, never a pass."""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from upgrader.analysis.checks import AnalysisCheck, CloudWatchQuery, MetricDataQuery
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.providers import DEFAULT_TIMEOUT_SECONDS, Target, bounded_timeout, no_value, value
from upgrader.analysis.templating import TemplateError, TemplateValues, render_plain


def cloudwatch_client(region: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Any:
    """A CloudWatch client whose calls are bounded (connect and read timeouts, two attempts)."""
    import boto3

    seconds = bounded_timeout(timeout)
    config = Config(connect_timeout=seconds, read_timeout=seconds, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client("cloudwatch", region_name=region, config=config)


class CloudWatchProvider:
    def __init__(self, client: Any) -> None:
        self._client = client

    def measure(self, check: AnalysisCheck, target: Target) -> Measurement:
        assert isinstance(check.query, CloudWatchQuery), "a cloudwatch check's query is metric data or alarms"
        query = check.query
        try:
            if query.alarm_names is not None:
                names = [render_plain(name, target.values) for name in query.alarm_names]
                shown = f"DescribeAlarms {names}"
                return self._alarms(check, target, names, shown)
            queries = [_rendered(q, target.values) for q in query.metric_data_queries or []]
        except TemplateError as exc:
            return no_value(check, target, str(query.texts()), f"template: {exc}")
        shown = f"GetMetricData {queries}"
        return self._metric_data(check, target, queries, shown)

    def _metric_data(
        self, check: AnalysisCheck, target: Target, queries: list[dict[str, Any]], shown: str
    ) -> Measurement:
        try:
            answer = self._client.get_metric_data(
                MetricDataQueries=queries, StartTime=target.values.since, EndTime=target.values.now,
                ScanBy="TimestampDescending",
            )  # fmt: skip
        except (ClientError, BotoCoreError) as exc:
            return no_value(check, target, shown, _error(exc), retryable=_retryable(exc))
        wanted = next(q["Id"] for q in queries if q.get("ReturnData", True))
        results = [r for r in answer.get("MetricDataResults", []) if r.get("Id") == wanted]
        if not results or not results[0].get("Values"):
            return no_value(check, target, shown, "no data")
        latest = max(zip(results[0]["Timestamps"], results[0]["Values"], strict=True))
        return value(check, target, shown, float(latest[1]))

    def _alarms(self, check: AnalysisCheck, target: Target, names: list[str], shown: str) -> Measurement:
        try:
            answer = self._client.describe_alarms(AlarmNames=names, AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        except (ClientError, BotoCoreError) as exc:
            return no_value(check, target, shown, _error(exc), retryable=_retryable(exc))
        states = {a["AlarmName"]: a["StateValue"]
                  for a in [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]}  # fmt: skip
        unknown = [n for n in names if n not in states]
        if unknown:
            return no_value(check, target, shown, f"no such alarm: {', '.join(unknown)}")
        if any(state == "INSUFFICIENT_DATA" for state in states.values()):
            return no_value(check, target, shown, "no data (an alarm in INSUFFICIENT_DATA)")
        return value(check, target, shown, float(sum(state == "ALARM" for state in states.values())))


def _rendered(query: MetricDataQuery, values: TemplateValues) -> dict[str, Any]:
    rendered: dict[str, Any] = {"Id": query.id, "ReturnData": query.return_data}
    if query.expression is not None:
        rendered["Expression"] = render_plain(query.expression, values)
    if query.metric_stat is not None:
        stat = query.metric_stat
        dimensions = [{"Name": k, "Value": render_plain(v, values)} for k, v in stat.dimensions.items()]
        rendered["MetricStat"] = {
            "Metric": {"Namespace": stat.namespace, "MetricName": stat.metric_name, "Dimensions": dimensions},
            "Period": stat.period, "Stat": stat.stat,
        }  # fmt: skip
    return rendered


_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "ServiceUnavailable", "InternalFailure", "InternalServiceError",
                    "RequestTimeout", "LimitExceeded"}  # fmt: skip


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return True  # BotoCoreError: no answer (timeouts, connection errors)


def _error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"CloudWatch {exc.response.get('Error', {}).get('Code', 'error')}"
    return f"CloudWatch unreachable: {type(exc).__name__}"
