"""docs/events/ holds one JSON Schema per detail type, equal to what upgradectl.event_schemas generates
(real payloads are validated against them in tests/e2e/test_lifecycle_events.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from upgrader.contract.strategies import strategy_names
from upgrader.infra.vocabulary import UPGRADE_STATUSES
from upgrader.notifications import events

from upgradectl.event_schemas import file_name, render

STRATEGIES = strategy_names()

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


def _upgrade(strategy: str, status: str) -> dict[str, object]:
    return {"upgradeId": "12", "component": "api", "version": "v1.2.0", "fromVersion": "v1.1.0",
            "strategy": strategy, "status": status, "total": 10, "completed": 1, "failed": 0, "currentWave": 1,
            "totalWaves": 4, "haltReason": None, "requestedBy": "local:me", "continuedBy": None,
            "executionName": "upgrade-12-a", "gate": None, "startedAt": "2026-01-02T03:04:05.000Z",
            "completedAt": None}  # fmt: skip


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("status", UPGRADE_STATUSES)
def test_an_upgrade_of_every_strategy_and_status_passes_its_schema(strategy, status):
    """The schemas' strategy and status enums are the code's own (upgrader.contract.strategies, upgrader.infra.vocabulary), so an event of a
    progressive upgrade passes (343 of 697 events of a progressive run failed when the list was hand-kept).
    Checked with python-jsonschema's Draft 2020-12 validator, independent of the e2e tests' jsonschema_rs.

    Breakage tried: the hand-kept enum ["all", "canary", "batch"] back in event_schemas.UPGRADE: every
    progressive case fails here (and the committed schemas' test)."""
    detail = {"eventId": "5", "eventKey": "started:upgrade-12-a", "severity": "info", "component": "api",
              "occurredAt": "2026-01-02T03:04:05.000Z", "upgrade": _upgrade(strategy, status),
              "run": {"runName": "upgrade-12-a"}}  # fmt: skip
    schema = json.loads((DOCS / file_name(events.UPGRADE_STARTED)).read_text())
    Draft202012Validator.check_schema(schema)
    errors = [
        e.message
        for e in Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).iter_errors(detail)
    ]
    assert errors == []
    assert list(Draft202012Validator(schema).iter_errors({**detail, "upgrade": _upgrade("sideways", status)}))
