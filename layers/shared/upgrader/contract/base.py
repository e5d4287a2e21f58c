"""The API models' foundations: the base classes (camelCase on the wire, snake_case in Python: defined in
`upgrader.infra.wire`, below the analysis checks too), the patterns and constrained types that requests share."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, StringConstraints

from upgrader.infra.timestamps import iso
from upgrader.infra.wire import Model as Model  # the wire's bases, as the contract names them
from upgrader.infra.wire import StrictModel as StrictModel

INT4_MAX = 2**31 - 1  # PostgreSQL INT / SERIAL: every id and count the database stores


def decimal_pattern(maximum: int) -> str:
    """A regular expression for the decimal numbers 1..maximum, without sign or leading zeros.

    Ids travel as strings (the specification shows "123"); bounding them in the pattern itself keeps
    an out-of-range id a 422 at the edge instead of an error from PostgreSQL, and the OpenAPI
    document states the exact range."""
    digits = str(maximum)
    shorter = {1: [], 2: ["[1-9]"]}.get(len(digits), [f"[1-9][0-9]{{0,{len(digits) - 2}}}"])
    alternatives = list(shorter)
    for index, digit in enumerate(digits):  # as long as `maximum`, with a smaller digit at `index`
        low, high = (1 if index == 0 else 0), int(digit) - 1
        if high >= low:
            rest = len(digits) - index - 1
            alternatives.append(
                digits[:index]
                + (str(low) if low == high else f"[{low}-{high}]")
                + ("[0-9]" * rest if rest < 2 else f"[0-9]{{{rest}}}")
            )
    alternatives.append(digits)
    return "^(?:" + "|".join(alternatives) + ")$"


# An RFC 3339 time with its offset: 2026-12-01T00:00:00Z, 2026-12-01T02:00:00+01:00.
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
# OCI tag grammar: what `helm --set-string <key>=<version>` may safely receive (no , = [ spaces).
VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
# Customer ids become Kubernetes label values and object-name parts: ASCII only, no / or dots.
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
UPGRADE_ID_PATTERN = decimal_pattern(INT4_MAX)
# A label selector of equality terms: key=value[,key=value...], at most 10 terms.
_LABEL_TERM = LABEL_KEY_PATTERN[1:-1] + "=" + LABEL_VALUE_PATTERN[1:-1]
LABEL_SELECTOR_PATTERN = rf"^{_LABEL_TERM}(,{_LABEL_TERM}){{0,9}}$"
# An absolute URL path whose segments are never "..": "." and ".." would let a probe leave the
# component's service (the Kubernetes service proxy resolves them). Length: HTTP_PATH_MAX_LENGTH.
_SEGMENT = r"(?:\.|[A-Za-z0-9_~-][A-Za-z0-9._~-]*|\.[A-Za-z0-9_~-][A-Za-z0-9._~-]*|\.\.[A-Za-z0-9._~-]+)?"
HTTP_PATH_PATTERN = rf"^/(?:{_SEGMENT}/)*{_SEGMENT}$"
HTTP_PATH_MAX_LENGTH = 255
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# A service port's name (starts with a letter, at most 15 characters) or number (1..65535).
PORT_PATTERN = r"^(?:[a-z](?:[a-z0-9-]{0,13}[a-z0-9])?|" + decimal_pattern(65535)[4:-2] + ")$"
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$"
# A Helm chart version (SemVer 2, as Helm requires; build metadata allowed).
CHART_VERSION_PATTERN = r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]{1,64})?(\+[0-9A-Za-z.-]{1,64})?$"

Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
CustomerId = Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE_PATTERN)]
HttpPath = Annotated[str, StringConstraints(pattern=HTTP_PATH_PATTERN, max_length=HTTP_PATH_MAX_LENGTH)]


def _whole_number(value: Any) -> Any:
    """JSON has one number type: 10.0 is the integer 10 (JSON Schema agrees). 10.5, "10" and true stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Integer fields of request bodies: `Annotated[int, Field(ge=.., le=..), WHOLE]`. The bounds come
# before the validator so that pydantic writes them as JSON Schema minimum/maximum, even in a union.
WHOLE = BeforeValidator(_whole_number)


def _digits_only(value: Any) -> Any:
    """A query string integer is written in decimal digits: '+1', ' 1', '1\n' and '1_0' are refused."""
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,12}", value):
        raise ValueError("must be a whole number written in decimal digits")
    return value


# Integer query parameters: `Annotated[int, Field(ge=.., le=..), DIGITS, Query()]` (bounds before
# the validator, so that the document states them as minimum/maximum).
DIGITS = BeforeValidator(_digits_only)

MAX_TARGETED_CUSTOMERS = 10_000


def label_map_schema(schema: dict[str, Any]) -> None:
    """A label map as client generators read it: the value schema as `additionalProperties`, the key pattern
    as `propertyNames`.

    Pydantic writes `dict[LabelKey, ...]` as `patternProperties`; with `additionalProperties: false` beside
    it, generators (openapi-python-client) make a model without fields and send `{}` whatever the caller
    gave. Keys that do not match the pattern are refused either way, so the document says so."""
    patterns = schema.pop("patternProperties", None)
    if patterns:
        ((key_pattern, value_schema),) = patterns.items()
        schema["propertyNames"] = {"pattern": key_pattern}
        schema["additionalProperties"] = value_schema


# Free text stored in PostgreSQL: no NUL (PostgreSQL text cannot hold it) and no other control
# character but tab and newlines (they would garble logs and terminals).
FREE_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


def _iso_time(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


# A response's time: written as the specification shows it (2025-10-22T17:00:00.000Z) from a record's datetime.
Timestamp = Annotated[str, BeforeValidator(_iso_time)]

M = TypeVar("M", bound=Model)


def from_record(model: type[M], record: object, **computed: Any) -> M:
    """The response `model` validated from a record's attributes of the same (Python) names, plus the figures
    computed apart (counts, lists), which take precedence: the one way a response is built from a row."""
    known = {name: getattr(record, name) for name in model.model_fields if hasattr(record, name)}
    return model.model_validate({**known, **computed})
