"""What the request models' helpers promise beyond the fields' own bounds (issue 27's mutation run of
upgrader/contract/models.py): patterns any OpenAPI client's regex engine reads, query integers in decimal
digits, and which refusal a failure threshold gives first."""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError
from upgrader.contract import base
from upgrader.contract.base import decimal_pattern
from upgrader.contract.models import FailureThreshold

# A `{...}` in a pattern: ECMAScript (the dialect of OpenAPI's `pattern`) in unicode mode refuses any brace that
# is not a quantifier {m} or {m,n} with m <= n; Python's `re` reads such a brace as a literal character instead.
BRACE = re.compile(r"\{([^{}]*)\}")


@pytest.mark.parametrize("maximum", [1, 5, 9, 10, 42, 100, 999, 65535, base.INT4_MAX])
def test_the_decimal_pattern_has_only_real_repetition_counts(maximum: int) -> None:
    """Python's `re` takes `[0-9]{0,-1}` as the literal text "{0,-1}" (so the numbers matched stay right),
    a client generator's ECMAScript engine refuses the pattern. mutants: models.py:33 `{1: [], ...}` →
    `{2: [], ...}` (a one-digit maximum then gets the alternative `[1-9][0-9]{0,-1}`)."""
    pattern = decimal_pattern(maximum)
    for counts in BRACE.findall(pattern):
        low, _, high = counts.partition(",")
        assert low.isdigit() and (not high or (high.isdigit() and int(low) <= int(high))), (maximum, pattern)
    assert "{" not in BRACE.sub("", pattern), (maximum, pattern)


def test_a_one_digit_maximum_has_no_longer_alternative() -> None:
    """mutants: models.py:33 `{1: [], ...}` → `{2: [], ...}`."""
    assert decimal_pattern(9) == "^(?:[1-8]|9)$"
    assert decimal_pattern(1) == "^(?:1)$"


QUERY_INT = TypeAdapter(Annotated[int, Field(ge=0, le=1000), base.DIGITS])


@pytest.mark.parametrize("text", ["+1", " 1", "1\n", "1_0", "0x1"])
def test_a_query_integer_written_otherwise_than_in_digits_is_refused(text: str) -> None:
    """An integer query parameter (`Annotated[int, Field(..), DIGITS, Query()]`, the API's `limit`, `offset`)
    refuses what pydantic's lax int would read as a number. mutants: models.py:100 `DIGITS =
    BeforeValidator(_digits_only)` → `DIGITS = None` (the annotation then adds nothing)."""
    with pytest.raises(ValidationError, match="must be a whole number written in decimal digits"):
        QUERY_INT.validate_python(text)


def test_a_query_integer_in_digits_is_read() -> None:
    assert QUERY_INT.validate_python("12") == 12


@pytest.mark.parametrize("data", [{"percent": 10, "count": None}, {"count": None, "percent": 10}])
def test_a_threshold_with_both_keys_is_refused_as_two_keys_even_when_one_is_null(data: dict[str, Any]) -> None:
    """Two keys are the mistake to name, before the null among them. mutants: models.py:138
    `@model_validator(mode="before")` removed from `_one_key` (the null then is the only refusal)."""
    with pytest.raises(ValidationError) as refused:
        FailureThreshold.model_validate(data)
    assert [error["msg"] for error in refused.value.errors()] == [
        "Value error, failureThreshold takes exactly one of 'percent' or 'count'"
    ]


def test_a_thresholds_schema_states_no_default_the_validators_refuse() -> None:
    """The model's own JSON Schema (`model_json_schema()`) never offers `"default": null` for `percent` or
    `count`: null is refused (`_not_null`). (docs/openapi.json cannot show this: Powertools leaves null defaults
    out of the document it writes.) mutants: models.py:119 `schema.pop("default", None)` →
    `pop("XXdefaultXX", None)`; :131-133 and :134-136 `Field(default=None, json_schema_extra=_without_default)` →
    `None`."""
    properties = FailureThreshold.model_json_schema()["properties"]
    assert properties["percent"] == {"type": "number", "minimum": 0, "maximum": 100, "title": "Percent"}
    assert properties["count"] == {"type": "integer", "minimum": 0, "maximum": 10_000, "title": "Count"}
