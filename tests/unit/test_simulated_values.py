"""The simulated helm's pure parts: --set parsing, coalescing, argv (Helm 3.17's rules)."""

from __future__ import annotations

from typing import Any

import pytest

from upgradectl.local.simcluster.argv import parse_duration, parse_helm_argv
from upgradectl.local.simcluster.values import (
    ValuesError,
    coalesce_tables,
    coalesce_values,
    flatten,
    nest,
    parse_set,
)


def test_set_splits_on_unescaped_commas_and_dots() -> None:
    values = parse_set(r"a.b=1,c\.d=x\,y,e[1].f=g", {}, as_string=False)
    assert values == {"a": {"b": 1}, "c.d": "x,y", "e": [None, {"f": "g"}]}


def test_set_string_keeps_every_value_as_text() -> None:
    assert parse_set("a=true,b=null,c=7", {}, as_string=True) == {"a": "true", "b": "null", "c": "7"}


@pytest.mark.parametrize(
    ("raw", "typed"),
    [("true", True), ("FALSE", False), ("null", None), ("0", 0), ("42", 42), ("-3", -3), ("007", "007"),
     ("1_000", "1_000"), ("1.5", "1.5"), ("", ""), ("v1.2.0", "v1.2.0")],
)  # fmt: skip
def test_set_types_values_like_strvals(raw: str, typed: object) -> None:
    assert parse_set(f"k={raw}", {}, as_string=False) == {"k": typed}


def test_a_key_without_value_is_refused() -> None:
    with pytest.raises(ValuesError, match='key "a" has no value'):
        parse_set("a", {}, as_string=False)


def test_coalesce_tables_first_wins_and_null_deletes() -> None:
    merged = coalesce_tables({"a": {"b": 2}, "gone": None, "new": None}, {"a": {"b": 1, "c": 3}, "gone": 1})
    assert merged == {"a": {"b": 2, "c": 3}, "new": None}


def test_coalesce_values_puts_user_values_over_chart_defaults() -> None:
    defaults: dict[str, Any] = {"api": {"image": {"repository": "r", "tag": "d"}, "replicaCount": 2}, "extra": {"x": 1}}
    config = {"api": {"image": {"tag": "u"}, "replicaCount": None}, "extra": None}
    assert coalesce_values(defaults, config) == {"api": {"image": {"repository": "r", "tag": "u"}}}
    assert defaults["api"]["replicaCount"] == 2  # the chart's defaults are not modified


def test_dotted_and_nested_values_nest_and_flatten_back() -> None:
    nested = nest({"api.image.tag": "v1", "api": {"image": {"pullPolicy": "Always"}}, "x": 1})
    assert nested == {"api": {"image": {"tag": "v1", "pullPolicy": "Always"}}, "x": 1}
    assert flatten(nested) == {"api.image.tag": "v1", "api.image.pullPolicy": "Always", "x": 1}


def test_argv_flags_in_both_forms() -> None:
    call = parse_helm_argv(["helm", "upgrade", "-n=ns", "rel", "oci://r/c", "--timeout=90s", "--atomic",
                            "--version", "1.4.0", "--reuse-values=false", "--set", "a=1"])  # fmt: skip
    assert call is not None
    assert (call.release, call.chart, call.namespace, call.version) == ("rel", "oci://r/c", "ns", "1.4.0")
    assert (call.timeout_seconds, call.atomic, call.wait, call.reuse_values, call.sets) == (90.0, True, True, False,
                                                                                            ["a=1"])  # fmt: skip
    assert call.error is None


def test_argv_helm_refuses() -> None:
    unknown = parse_helm_argv(["helm", "upgrade", "rel", "chart", "--bogus"])
    assert unknown is not None and unknown.error == "unknown flag: --bogus"
    missing = parse_helm_argv(["helm", "upgrade", "rel"])
    assert missing is not None and (missing.error or "").startswith('"helm upgrade" requires 2 arguments')
    revision = parse_helm_argv(["helm", "rollback", "rel", "two"])
    assert revision is not None and (revision.error or "").startswith("could not convert revision to a number")
    assert parse_helm_argv(["helm", "status", "rel"]) is None
    assert parse_helm_argv(["kubectl", "get", "pods"]) is None


def test_go_durations() -> None:
    assert [parse_duration(t) for t in ("600s", "5m0s", "1h30m", "1.5s", "250ms", "0")] == [
        600.0, 300.0, 5400.0, 1.5, 0.25, 0.0
    ]  # fmt: skip
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("10")
