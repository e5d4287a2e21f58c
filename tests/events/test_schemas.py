"""docs/events/ holds one JSON Schema per detail type, equal to what upgradectl.event_schemas generates
(real payloads are validated against them in tests/e2e/test_lifecycle_events.py)."""

from __future__ import annotations

from pathlib import Path

from upgrader import events

from upgradectl.event_schemas import file_name, render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events"


def test_every_detail_type_has_its_schema_and_nothing_else_is_there():
    expected = {file_name(t) for t in events.DETAIL_TYPES}
    assert {p.name for p in DOCS.glob("*.schema.json")} == expected


def test_the_schemas_are_the_generators_output():
    stale = [t for t in events.DETAIL_TYPES if (DOCS / file_name(t)).read_text() != render(t)]
    assert not stale, f"run `make event-schemas`: {stale}"


def test_the_readme_of_the_events_names_every_detail_type():
    text = (DOCS / "README.md").read_text()
    assert [t for t in events.DETAIL_TYPES if f"`{t}`" not in text] == []
