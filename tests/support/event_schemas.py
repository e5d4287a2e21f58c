"""Events checked against their published schemas (docs/events/) with python-jsonschema's Draft 2020-12
validator: an implementation independent of the product and of jsonschema_rs."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from jsonschema import Draft202012Validator
from psycopg.rows import dict_row
from upgrader.notifications.publisher import OutboxEvent

from upgradectl.event_schemas import file_name

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"


@functools.cache
def validator(detail_type: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / file_name(detail_type)).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(sent: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """One line per (detail type, detail) that does not match its schema, naming the first problems."""
    problems = []
    for detail_type, detail in sent:
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(detail_type).iter_errors(detail)
        ]
        if errors:
            problems.append(f"{detail_type} #{detail.get('eventId')}: {errors[:3]}")
    return problems


def recorded_events(database_url: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the outbox as a channel sends it: (detail type, detail)."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM event_outbox ORDER BY id").fetchall()
    return [(str(row["detail_type"]), OutboxEvent.from_row(row).payload()) for row in rows]
