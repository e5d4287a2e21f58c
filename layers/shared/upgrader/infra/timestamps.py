"""Timestamps as the product writes them, the one formatter (no pydantic: the workers use it without loading
the API models)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def iso(ts: datetime) -> str: ...
@overload
def iso(ts: None) -> None: ...
@overload
def iso(ts: datetime | None) -> str | None: ...
def iso(ts: datetime | None) -> str | None:
    """Timestamps as the specification shows them: 2025-10-22T17:00:00.000Z (UTC)."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def iso_seconds(ts: datetime) -> str:
    """To the second (truncated): 2025-10-22T17:00:00Z (UTC; a naive timestamp is UTC already)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
