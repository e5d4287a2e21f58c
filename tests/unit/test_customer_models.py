"""The fleet API's request models on their own (upgrader/contract/customer_models.py): what each field accepts
and refuses, and the words of each refusal (issue 27's mutation run)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from upgrader.contract import customer_models
from upgrader.contract.customer_models import CustomerPatch, MaintenanceWindow, PinRequest, PinsPatch, parse_timestamp

WINDOW = {"timezone": "Europe/Berlin", "days": ["sat"], "start": "02:00", "durationMinutes": 120}
PIN = {"reason": "customer asked", "expiresAt": "2026-12-01T00:00:00Z"}


def _refusal(model: Any, data: Any) -> tuple[str, str]:
    """The first error's location and message."""
    with pytest.raises(ValidationError) as refused:
        model.model_validate(data)
    error = refused.value.errors()[0]
    return ".".join(str(p) for p in error["loc"]), str(error["msg"])


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_a_time_zone_name_is_accepted(zone: str) -> None:
    assert MaintenanceWindow.model_validate({**WINDOW, "timezone": zone}).timezone == zone


@pytest.mark.parametrize("zone", ["/UTC", "../etc/passwd", "Europe/../Berlin", "A/b/c/d", "Europe/Berlin ", "1UTC", ""])
def test_a_time_zone_that_is_no_name_is_refused(zone: str) -> None:
    """mutants: customer_models.py:28 TIMEZONE_PATTERN."""
    assert _refusal(MaintenanceWindow, {**WINDOW, "timezone": zone})[0] == "timezone"


@pytest.mark.parametrize(("field", "value"), [("start", "00:00"), ("start", "23:59"), ("start", "19:30"),
                                              ("durationMinutes", 15), ("durationMinutes", 1440),
                                              ("durationMinutes", 60.0), ("days", ["mon", "sun"])])  # fmt: skip
def test_a_window_within_its_bounds_is_accepted(field: str, value: Any) -> None:
    assert MaintenanceWindow.model_validate({**WINDOW, field: value}).model_dump()[field] == value


@pytest.mark.parametrize(("field", "value"), [("start", "24:00"), ("start", "7:00"), ("start", "12:60"),
                                              ("start", "20:00x"), ("durationMinutes", 14),
                                              ("durationMinutes", 1441), ("durationMinutes", "60"),
                                              ("durationMinutes", 60.5), ("days", []),
                                              ("days", ["mon", "tue", "wed", "thu", "fri", "sat", "sun", "mon"]),
                                              ("days", ["monday"])])  # fmt: skip
def test_a_window_outside_its_bounds_is_refused(field: str, value: Any) -> None:
    """mutants: customer_models.py:29 CLOCK_PATTERN; :65 the days' bounds; :69 the duration's bounds."""
    assert _refusal(MaintenanceWindow, {**WINDOW, field: value})[0].startswith(field)


def test_a_day_named_twice_is_refused_in_words() -> None:
    """mutants: customer_models.py:76 `!=` → `==`; :77 the message."""
    assert _refusal(MaintenanceWindow, {**WINDOW, "days": ["sat", "sun", "sat"]}) == (
        "days",
        "Value error, days contains duplicates",
    )


def test_a_pins_reason_is_plain_text_of_1_to_500_characters() -> None:
    """mutants: customer_models.py:87 the bounds, REASON_PATTERN."""
    assert PinRequest.model_validate({**PIN, "reason": "x" * 500, "version": "v1.2.0"}).version == "v1.2.0"
    assert PinRequest.model_validate({**PIN, "reason": "a\tb\nc"}).reason == "a\tb\nc"
    for reason in ("", "x" * 501, "bell\x07", "nul\x00"):
        assert _refusal(PinRequest, {**PIN, "reason": reason})[0] == "reason"
    assert _refusal(PinRequest, {**PIN, "expiresAt": "2026-12-01T00:00:00.0000001Z"})[0] == "expiresAt"
    assert _refusal(PinRequest, {"reason": "x"})[0] == "expiresAt"  # required


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-01T00:00:00Z", datetime(2026, 12, 1, tzinfo=UTC)),
    ("2026-12-01T02:30:00+02:00", datetime(2026, 12, 1, 0, 30, tzinfo=UTC)),
    ("2026-12-01T00:00:00.5-01:00", datetime(2026, 12, 1, 1, 0, 0, 500000, tzinfo=UTC)),
])  # fmt: skip
def test_a_timestamp_is_read_as_the_utc_instant_it_names(text: str, expected: datetime) -> None:
    """mutants: customer_models.py:100 `.replace("Z", "+00:00")` mutated, `astimezone(UTC)` dropped."""
    parsed = parse_timestamp(text)
    assert parsed == expected and parsed.tzinfo is UTC  # the same instant, told in UTC


def test_a_timestamp_without_offset_or_impossible_is_refused_in_words() -> None:
    """mutants: customer_models.py:97-102 the messages, `not re.match` → `re.match`."""
    with pytest.raises(ValueError, match=r"^not an RFC 3339 time with offset, e\.g\. 2026-12-01T00:00:00Z$"):
        parse_timestamp("2026-12-01T00:00:00")
    with pytest.raises(ValueError, match=r"^not a valid time: month must be in 1\.\.12$"):
        parse_timestamp("2026-13-01T00:00:00Z")


def test_pins_must_name_a_component_and_null_removes_its_pin() -> None:
    """mutants: customer_models.py:117 `not self.model_fields_set` → `self.model_fields_set`; :118 the message."""
    assert _refusal(PinsPatch, {}) == ("", "Value error, pins names no component")
    removal = PinsPatch.model_validate({"api": None})
    assert removal.model_fields_set == {"api"} and removal.model_dump(exclude_unset=True) == {"api": None}
    assert PinsPatch.model_validate({"dashboard": PIN}).model_dump(exclude_unset=True)["dashboard"] is not None


@pytest.mark.parametrize("field", ["labels", "pins", "status", "acknowledgeDrift"])
def test_a_patch_field_sent_as_null_is_refused_in_words(field: str) -> None:
    """Null removes a label, a pin or the window; for these fields it means nothing, so it is refused.
    mutants: customer_models.py:156 the fields named; :159 `value is None` → `is not None`; :160 the message."""
    assert _refusal(CustomerPatch, {field: None}) == (
        field,
        "Value error, cannot be null (leave the field out to keep it as it is)",
    )


def test_null_removes_the_window_and_a_labels_value() -> None:
    patch = CustomerPatch.model_validate({"maintenanceWindow": None, "labels": {"tier": None, "region": "eu"}})
    assert patch.maintenance_window is None and patch.labels == {"tier": None, "region": "eu"}


def test_acknowledge_drift_is_only_true() -> None:
    """mutants: customer_models.py:166 `value is not True` → `is True`; :167 the message."""
    assert CustomerPatch.model_validate({"acknowledgeDrift": True}).acknowledge_drift is True
    assert _refusal(CustomerPatch, {"acknowledgeDrift": False}) == (
        "acknowledgeDrift",
        "Value error, only true (acknowledging the drift clears it)",
    )


def test_a_patch_that_names_nothing_is_refused_in_words() -> None:
    """mutants: customer_models.py:172 `not self.model_fields_set` → `self.model_fields_set`; :174 the message."""
    assert _refusal(CustomerPatch, {}) == ("", "Value error, the patch changes nothing: give labels, "
                                               "maintenanceWindow, pins, status or acknowledgeDrift")  # fmt: skip
    assert CustomerPatch.model_validate({"status": "suspended"}).status == "suspended"


@pytest.mark.parametrize(("data", "field"), [({"status": "decommissioned"}, "status"), ({"labels": {}}, "labels"),
                                             ({"labels": {f"k{i}": "v" for i in range(21)}}, "labels"),
                                             ({"other": 1}, "other")])  # fmt: skip
def test_what_a_patch_may_not_do_is_refused(data: dict[str, Any], field: str) -> None:
    """mutants: customer_models.py:133 the labels' bounds; :145 the statuses a patch may set."""
    assert _refusal(CustomerPatch, data)[0].startswith(field)


def test_a_field_that_may_be_left_out_but_never_null_is_documented_without_null() -> None:
    """`_not_nullable` drops the null option and the default; with several options left it keeps them as
    anyOf. mutants: customer_models.py:38-43 (`pop("default")`, `o != {"type": "null"}`, `len(options) == 1`,
    `k not in schema`, `elif options`, `schema["anyOf"] = options`)."""
    one = {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": None, "description": "d"}
    customer_models._not_nullable(one)  # noqa: SLF001 - the schema hook itself
    assert one == {"type": "string", "maxLength": 5, "description": "d"}
    kept = {"anyOf": [{"type": "string", "description": "own"}, {"type": "null"}], "description": "field's"}
    customer_models._not_nullable(kept)  # noqa: SLF001
    assert kept == {"type": "string", "description": "field's"}  # the field's own words win
    several = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}], "default": None}
    customer_models._not_nullable(several)  # noqa: SLF001
    assert several == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    only_true = {"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None}
    customer_models._only_true_schema(only_true)  # noqa: SLF001
    assert only_true == {"type": "boolean", "const": True}
