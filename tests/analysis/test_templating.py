"""Templating: every variable substituted, unknown ones refused, and a value can never change a query's
structure (PromQL strings and regex matchers, URLs, CloudWatch names)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from upgrader.analysis.checks import promql_problem
from upgrader.analysis.templating import (
    TemplateError,
    TemplateValues,
    render_plain,
    render_promql,
    render_url,
    variables_in,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def values(customer: str = "cust_abc123", version: str = "v1.2.0") -> TemplateValues:
    return TemplateValues(customer, f"customer-{customer}", "api", version, NOW - timedelta(minutes=5), NOW)


def test_every_variable_is_substituted():
    query = ('sum(rate(app_errors_total{customer="{{customerId}}",namespace="{{ namespace }}",'
             "component='{{component}}',version=\"{{version}}\"}[{{since}}]))")  # fmt: skip
    assert render_promql(query, values()) == (
        'sum(rate(app_errors_total{customer="cust_abc123",namespace="customer-cust_abc123",'
        "component='api',version=\"v1.2.0\"}[300s]))"
    )


def test_an_unknown_variable_is_refused_naming_it():
    with pytest.raises(TemplateError, match=r"\{\{tenant\}\}"):
        variables_in('x{customer="{{tenant}}"}')
    with pytest.raises(TemplateError, match="unclosed"):
        variables_in('x{customer="{{customerId"}')


def test_a_customer_id_cannot_inject_promql_into_a_label_matcher():
    evil = 'x"} or vector(1) or y{a="'
    rendered = render_promql('sum(app_errors_total{customer="{{customerId}}"})', values(evil))
    assert rendered == 'sum(app_errors_total{customer="x\\"} or vector(1) or y{a=\\""})'
    assert promql_problem(rendered) is None  # still one string inside one matcher: the structure is intact
    assert rendered.count('"') - rendered.count('\\"') == 2


def test_a_value_in_a_single_quoted_string_escapes_that_quote_and_backslashes():
    rendered = render_promql("up{customer='{{customerId}}'}", values("a\\'b"))
    assert rendered == "up{customer='a\\\\\\'b'}"


def test_a_value_in_a_regex_matcher_matches_only_itself():
    rendered = render_promql('up{customer=~"{{customerId}}"}', values(".*"))
    assert rendered == 'up{customer=~"\\\\.\\\\*"}'  # PromQL string "\\.\\*" is the regex \.\* : a literal ".*"


def test_a_variable_outside_a_string_is_refused_except_the_window():
    with pytest.raises(TemplateError, match="inside a quoted string"):
        render_promql("up{customer={{customerId}}}", values())
    with pytest.raises(TemplateError, match="raw"):
        render_promql("up{customer=`{{customerId}}`}", values())
    assert render_promql("rate(up[{{since}}])", values()) == "rate(up[300s])"


def test_url_values_are_percent_encoded():
    url = render_url("https://status.example.com/{{customerId}}/health?since={{since}}", values("../admin?x=1#"))
    assert url == "https://status.example.com/..%2Fadmin%3Fx%3D1%23/health?since=2026-12-06T11%3A55%3A00Z"


def test_cloudwatch_values_outside_the_safe_alphabet_are_refused():
    assert render_plain("errors-{{customerId}}", values()) == "errors-cust_abc123"
    with pytest.raises(TemplateError, match="CloudWatch"):
        render_plain("SEARCH('{{customerId}}')", values("a') + SEARCH('b"))
