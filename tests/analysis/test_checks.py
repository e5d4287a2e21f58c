"""A check's validation: each bad input is an error naming the field (the API's 422 once wired)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from upgrader.analysis.checks import AnalysisCheck, Condition, promql_problem

ERROR_RATE = 'sum(rate(app_errors_total{customer="{{customerId}}"}[{{since}}]))'


def check(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "error-rate",
        "provider": "prometheus",
        "query": ERROR_RATE,
        "intervalSeconds": 30,
        "count": 2,
        "failureCondition": {"op": ">", "value": 0.02},
        "judgement": {"kind": "threshold"},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def errors_of(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        AnalysisCheck.model_validate_json(json.dumps(body))
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in caught.value.errors()]


def test_a_good_check_reads_its_camel_case_fields():
    parsed = AnalysisCheck.model_validate_json(json.dumps(check()))
    assert (parsed.interval_seconds, parsed.count, parsed.failure_condition) == (30, 2, Condition(op=">", value=0.02))
    assert parsed.model_dump(by_alias=True)["failureCondition"] == {"op": ">", "value": 0.02}


def test_a_snake_case_key_is_an_unknown_field_as_in_every_request():
    """The checks' base is the contract's StrictModel (upgrader.infra.wire): only the wire's camelCase names.

    Breakage tried: `validate_by_name=True` in `StrictModel` (the checks' old `populate_by_name`): this failed."""
    body = check(intervalSeconds=None, interval_seconds=30)
    assert errors_of(body) == [("interval_seconds", "Extra inputs are not permitted")]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"provider": "datadog"}, "provider", "'prometheus', 'cloudwatch' or 'http'"),
        ({"query": "sum(rate(x[5m])"}, "query", "is not closed"),
        ({"query": 'x{customer="abc}'}, "query", "string opened"),
        ({"query": "sum(x])"}, "query", "unexpected ']'"),
        ({"query": 'x{customer="{{tenant}}"}'}, "query", "unknown template variable {{tenant}}"),
        ({"query": {"url": "http://x"}}, "query", "PromQL expression"),
        ({"successCondition": {"op": "<", "value": 0.05}}, "failureCondition", "contradicts successCondition"),
        ({"failureCondition": None}, "judgement", "needs successCondition or failureCondition"),
        ({"failureCondition": {"op": "=~", "value": 1}}, "failureCondition.op", "'<', '<=', '>' or '>='"),
        ({"failureCondition": {"op": ">", "value": "0.1"}}, "failureCondition.value", "valid number"),
        ({"judgement": {"kind": "vibes"}}, "judgement", "'threshold', 'comparison'"),
        ({"judgement": {"kind": "comparison", "confidence": 1.5}}, "judgement.comparison.confidence", "0.999"),
        ({"judgement": {"kind": "comparison", "minPerCohort": 2}}, "judgement.comparison.minPerCohort", "3"),
        ({"judgement": {"kind": "comparison", "toleratedDegradation": -0.1}},
         "judgement.comparison.toleratedDegradation", "0"),
        ({"intervalSeconds": 1}, "intervalSeconds", "greater than or equal to 5"),
        ({"count": 0}, "count", "greater than or equal to 1"),
        ({"name": "Error Rate!"}, "name", "pattern"),
        ({"interval": 60}, "interval", "Extra inputs"),
        ({"provider": "http", "query": {"url": "file:///etc/passwd", "jsonPath": "$.a"}}, "query", "url"),
        ({"provider": "http", "query": {"url": "https://x/{{customer}}", "jsonPath": "$.a"}}, "query", "{{customer}}"),
        ({"provider": "http", "query": {"url": "https://x/", "jsonPath": "$..a"}}, "query", "jsonPath"),
        ({"provider": "cloudwatch", "query": {"alarmNames": ["a"], "metricDataQueries": [{"id": "m", "expression": "1"}]}},
         "query", "exactly one of metricDataQueries and alarmNames"),
        ({"provider": "cloudwatch", "query": {"metricDataQueries": [{"id": "m"}]}}, "query", "expression and metricStat"),
        ({"provider": "cloudwatch", "query": {"alarmNames": ["{{nope}}"]}}, "query", "{{nope}}"),
    ],
)  # fmt: skip
def test_each_bad_input_is_an_error_naming_its_field(changes, field, words):
    found = errors_of(check(**changes))
    assert [f for f, _ in found] == [field], found
    assert words in found[0][1], found


def test_conditions_that_leave_a_gap_are_accepted_and_the_gap_is_inconclusive():
    parsed = AnalysisCheck.model_validate_json(json.dumps(check(successCondition={"op": "<", "value": 0.01})))
    assert [parsed.verdict_of(v) for v in (0.005, 0.015, 0.03)] == ["pass", "inconclusive", "fail"]


@pytest.mark.parametrize(
    ("success", "failure", "contradict"),
    [
        ((">=", 1.0), ("<=", 1.0), True),  # both hold at exactly 1
        ((">", 1.0), ("<=", 1.0), False),
        ((">=", 1.0), ("<", 1.0), False),
        (("<", 2.0), (">", 1.0), True),
        (("<", 1.0), ("<", 5.0), True),  # same direction: always some value meets both
    ],
)
def test_two_conditions_contradict_exactly_when_some_value_meets_both(success, failure, contradict):
    a, b = Condition(op=success[0], value=success[1]), Condition(op=failure[0], value=failure[1])
    assert a.overlaps(b) is contradict
    assert b.overlaps(a) is contradict


def test_promql_comments_and_escaped_quotes_do_not_confuse_the_syntax_check():
    assert promql_problem('sum(x{a="q\\"(("}) # a comment with ( unbalanced') is None
    assert promql_problem("   ") is not None
