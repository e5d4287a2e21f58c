"""A LIST's pages in the simulated API server (`limit` + `continue`, see `store`), and the sorted key order
they walk."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from upgradectl.local.simcluster.api_errors import bad_request

Obj = dict[str, Any]


@dataclass
class Page:
    items: list[Obj]
    resource_version: int
    continue_token: str | None = None
    remaining: int | None = None


def encode_continue(revision: int, last_key: str) -> str:
    """The API server's token shape: base64 JSON {"v", "rv", "start"} (start = the key after the last)."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key + "\x00"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if raw.get("v") != "meta.k8s.io/v1" or not isinstance(raw.get("rv"), int):
            raise ValueError("unknown token version")
        start = str(raw["start"])
        if not start.endswith("\x00"):
            raise ValueError("no start key")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError) as exc:
        raise bad_request(f"continue key is not valid: {exc}") from exc
    return int(raw["rv"]), start[:-1]


def keys_after(order: list[str], start: str) -> Iterator[str]:
    """The keys of a sorted list after `start` ("" = all), lazily."""
    index = bisect.bisect_right(order, start) if start else 0
    while index < len(order):
        yield order[index]
        index += 1


def remove_sorted(order: list[str], key: str) -> None:
    index = bisect.bisect_left(order, key)
    if index < len(order) and order[index] == key:
        del order[index]
