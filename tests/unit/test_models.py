"""Timestamps as the specification shows them: 2025-10-22T17:00:00.000Z."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from upgrader.contract.models import iso

SPEC_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_iso_matches_the_specification_example():
    assert iso(datetime(2025, 10, 22, 17, 0, 0)) == "2025-10-22T17:00:00.000Z"


def test_iso_keeps_milliseconds_and_truncates_microseconds():
    assert iso(datetime(2025, 10, 22, 17, 0, 5, 123999)) == "2025-10-22T17:00:05.123Z"


def test_iso_pads_small_milliseconds():
    assert iso(datetime(2025, 1, 2, 3, 4, 5, 7000)) == "2025-01-02T03:04:05.007Z"


def test_iso_of_utc_aware_datetime():
    assert iso(datetime(2025, 10, 22, 17, 0, tzinfo=UTC)) == "2025-10-22T17:00:00.000Z"


def test_iso_of_none_is_none():
    assert iso(None) is None


@pytest.mark.parametrize("ts", [datetime(1999, 12, 31, 23, 59, 59, 999999), datetime(2030, 6, 1)])
def test_iso_always_has_the_specification_shape(ts):
    assert SPEC_FORMAT.match(iso(ts) or "")


def test_iso_converts_aware_datetimes_to_utc():
    local = datetime(2025, 10, 22, 19, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso(local) == "2025-10-22T17:00:00.000Z"
