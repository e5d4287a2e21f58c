"""An analysis check, as a deploy asks for it (the request's `analysis` list, once wired).

```json
{"name": "error-rate", "provider": "prometheus",
 "query": "sum(rate(app_errors_total{customer=\\"{{customerId}}\\"}[{{since}}])) / sum(rate(app_requests_total{customer=\\"{{customerId}}\\"}[{{since}}]))",
 "intervalSeconds": 60, "count": 5,
 "judgement": {"kind": "comparison", "toleratedDegradation": 0.1, "confidence": 0.95}}
```

The query's shape follows the provider: PromQL text (prometheus); `{"metricDataQueries": [...]}` or
`{"alarmNames": [...]}` (cloudwatch); `{"url": ..., "jsonPath": "$.a.b"}` (http). Conditions are
structured (`{"op": "<", "value": 0.01}`), never evaluated as code. A value meeting neither the success
nor the failure condition is inconclusive, as is a value the provider could not give.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from upgrader.analysis.templating import TemplateError, variables_in
from upgrader.infra.wire import StrictModel

PROVIDERS = ("prometheus", "cloudwatch", "http")
_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_CLOSERS = {")": "(", "]": "[", "}": "{"}


class Condition(StrictModel):
    """`value <op> threshold`: op one of <, <=, >, >=."""

    op: Literal["<", "<=", ">", ">="]
    value: float = Field(ge=-1e15, le=1e15)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def holds(self, measured: float) -> bool:
        return {"<": measured < self.value, "<=": measured <= self.value,
                ">": measured > self.value, ">=": measured >= self.value}[self.op]  # fmt: skip

    def overlaps(self, other: Condition) -> bool:
        """Whether some value meets both (two half-lines)."""
        if (self.op[0] == "<") == (other.op[0] == "<"):
            return True
        upper, lower = (self, other) if self.op[0] == "<" else (other, self)
        if lower.value < upper.value:
            return True
        return lower.value == upper.value and upper.op == "<=" and lower.op == ">="


class ThresholdJudgement(StrictModel):
    """Each value against the conditions: per customer (every upgraded customer must pass) or over the wave
    (the mean of the upgraded customers' values)."""

    kind: Literal["threshold"]
    scope: Literal["customer", "wave"] = "customer"


class ComparisonJudgement(StrictModel):
    """The upgraded customers against the control group (customers still on the old version), the same query
    over the same window: a one-sided Mann-Whitney U test of "upgraded worse than control by more than the
    tolerated degradation" at the given confidence."""

    kind: Literal["comparison"]
    worse_when: Literal["higher", "lower"] = "higher"  # an error rate or latency: higher is worse
    tolerated_degradation: float = Field(0.0, ge=0.0, le=10.0)  # relative: 0.1 = 10 % worse is tolerated
    confidence: float = Field(0.95, ge=0.5, le=0.999)
    min_per_cohort: int = Field(3, ge=3, le=1000)  # fewer customers with data in a cohort: inconclusive


class MetricStat(StrictModel):
    namespace: str = Field(min_length=1, max_length=255)
    metric_name: str = Field(min_length=1, max_length=255)
    dimensions: dict[Annotated[str, Field(min_length=1, max_length=255)], Annotated[str, Field(max_length=1024)]] = (
        Field(default_factory=dict, max_length=30)
    )
    period: int = Field(60, ge=1, le=86400)
    stat: str = Field("Average", max_length=16, pattern=r"^(Average|Sum|Minimum|Maximum|SampleCount|p\d{1,2}(\.\d+)?)$")


class MetricDataQuery(StrictModel):
    id: str = Field(pattern=r"^[a-z][a-zA-Z0-9_]{0,254}$")
    expression: str | None = Field(None, min_length=1, max_length=2048)  # metric math over the other ids
    metric_stat: MetricStat | None = None
    return_data: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> MetricDataQuery:
        if (self.expression is None) == (self.metric_stat is None):
            raise ValueError("give exactly one of expression and metricStat")
        return self


class CloudWatchQuery(StrictModel):
    metric_data_queries: list[MetricDataQuery] | None = Field(None, min_length=1, max_length=20)
    alarm_names: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        None, min_length=1, max_length=100
    )

    @model_validator(mode="after")
    def _one_kind(self) -> CloudWatchQuery:
        if (self.metric_data_queries is None) == (self.alarm_names is None):
            raise ValueError("give exactly one of metricDataQueries and alarmNames")
        if self.metric_data_queries is not None and sum(q.return_data for q in self.metric_data_queries) != 1:
            raise ValueError("exactly one of metricDataQueries has returnData true: the value judged")
        return self

    def texts(self) -> list[str]:
        """Every templated string in the query."""
        found = list(self.alarm_names or [])
        for query in self.metric_data_queries or []:
            found += [query.expression] if query.expression else []
            found += list(query.metric_stat.dimensions.values()) if query.metric_stat else []
        return found


class HttpQuery(StrictModel):
    url: str = Field(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=2048)
    json_path: str = Field(pattern=r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*|\[\d{1,4}\])*$", max_length=256)


Query = Annotated[str, Field(max_length=4096)] | CloudWatchQuery | HttpQuery
_QUERY_MODEL: dict[str, type[StrictModel]] = {"cloudwatch": CloudWatchQuery, "http": HttpQuery}


class AnalysisCheck(StrictModel):
    """One metric measured `count` times, `interval_seconds` apart, and judged."""

    name: str = Field(pattern=_NAME)
    provider: Literal["prometheus", "cloudwatch", "http"]
    query: Query
    interval_seconds: int = Field(60, ge=5, le=3600)
    count: int = Field(3, ge=1, le=100)
    success_condition: Condition | None = None
    failure_condition: Condition | None = None
    judgement: Annotated[ThresholdJudgement | ComparisonJudgement, Field(discriminator="kind")]

    @field_validator("query", mode="before")
    @classmethod
    def _query_of_provider(cls, value: Any, info: ValidationInfo) -> Any:
        provider = info.data.get("provider")
        if provider is None:
            return value  # the provider's own error names it
        if provider == "prometheus":
            if not isinstance(value, str) or not value.strip():
                raise PydanticCustomError("promql", "a PromQL expression (text) for the prometheus provider")
            if len(value) > 4096:
                raise PydanticCustomError("promql", "at most 4096 characters")
            texts = [value]
            problem = promql_problem(value)
            if problem:
                raise PydanticCustomError("promql", "PromQL does not parse: {problem}", {"problem": problem})
            parsed: Any = value
        else:
            try:
                parsed = _QUERY_MODEL[provider].model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise PydanticCustomError(
                    "query_shape", "{provider} query{where}: {message}",
                    {"provider": provider, "where": f".{where}" if where else "", "message": first["msg"]},
                ) from None  # fmt: skip
            texts = parsed.texts() if isinstance(parsed, CloudWatchQuery) else [parsed.url]
        for text in texts:
            try:
                variables_in(text)
            except TemplateError as exc:
                raise PydanticCustomError("template", "{problem}", {"problem": str(exc)}) from None
        return parsed

    @field_validator("failure_condition")
    @classmethod
    def _conditions_agree(cls, failure: Condition | None, info: ValidationInfo) -> Condition | None:
        success = info.data.get("success_condition")
        if success is not None and failure is not None and success.overlaps(failure):
            raise PydanticCustomError(
                "conditions",
                "contradicts successCondition: a value can meet both (a value meeting neither is inconclusive)",
            )
        return failure

    @field_validator("judgement")
    @classmethod
    def _threshold_has_a_condition(cls, judgement: Any, info: ValidationInfo) -> Any:
        conditions = (info.data.get("success_condition"), info.data.get("failure_condition"))
        if (
            isinstance(judgement, ThresholdJudgement)
            and conditions == (None, None)
            and "failure_condition" in info.data
        ):
            raise PydanticCustomError("conditions", "a threshold judgement needs successCondition or failureCondition")
        return judgement

    def verdict_of(self, value: float) -> Literal["pass", "fail", "inconclusive"]:
        """One value against the conditions: failure first; neither met -> inconclusive (only a failure
        condition given: a value not meeting it passes)."""
        if self.failure_condition is not None and self.failure_condition.holds(value):
            return "fail"
        if self.success_condition is None:
            return "pass"
        return "pass" if self.success_condition.holds(value) else "inconclusive"


def promql_problem(text: str) -> str | None:
    """A first syntax check of PromQL, without a server: strings closed, brackets balanced and matching.
    (The plan step also runs each query once against the real server, which parses it fully.)"""
    stack: list[tuple[str, int]] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote is not None:
            if char == "\\" and quote != "`":
                i += 2
                continue
            if char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
            start = i
        elif char == "#":  # a comment runs to the end of the line
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        elif char in "([{":
            stack.append((char, i))
        elif char in _CLOSERS:
            if not stack or stack[-1][0] != _CLOSERS[char]:
                return f"unexpected {char!r} at position {i}"
            stack.pop()
        i += 1
    if quote is not None:
        return f"the string opened at position {start} is not closed"
    if stack:
        return f"{stack[-1][0]!r} at position {stack[-1][1]} is not closed"
    if not re.search(r"[A-Za-z0-9_]", text):
        return "no metric, function or number"
    return None
