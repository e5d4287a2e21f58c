"""JSON Schemas of the lifecycle events' `detail`, one per detail type: `python -m upgradectl.event_schemas DIR`
(`make event-schemas` writes docs/events/). tests/e2e/test_lifecycle_events.py validates real payloads
against them, and tests/events checks the files equal this generator's output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from upgrader.contract.strategies import strategy_names
from upgrader.infra.vocabulary import UPGRADE_STATUSES
from upgrader.notifications import events

Schema = dict[str, Any]

_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_OPT_INT = {"type": ["integer", "null"]}
_OPT_NUM = {"type": ["number", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}


def _object(properties: dict[str, Any], required: list[str] | None = None, *, extra: bool = False) -> Schema:
    return {"type": "object", "properties": properties, "required": required or sorted(properties),
            "additionalProperties": extra}  # fmt: skip


_TRAIN = "components"  # optional (absent in events recorded before release trains; null for one component)


def upgrade_schema() -> Schema:
    """The upgrade an event is about; its strategy one of the registry's (upgrader.contract.strategies), asked now."""
    return _optional(_TRAIN, {
        "upgradeId": {"type": "string", "pattern": "^[0-9]+$"}, "component": _STR, "version": _STR,
        "fromVersion": _OPT_STR, "strategy": {"enum": list(strategy_names())},
        "status": {"enum": list(UPGRADE_STATUSES)}, "total": _INT, "completed": _INT, "failed": _INT,
        "currentWave": _OPT_INT, "totalWaves": _INT, "haltReason": _OPT_STR, "requestedBy": _OPT_STR,
        "continuedBy": _OPT_STR, "executionName": _OPT_STR, "gate": {"enum": ["approval", "bake", None]},
        "startedAt": _TIME, "completedAt": _TIME,
        "components": {"type": ["object", "null"], "additionalProperties": _STR,
                       "description": "a release train: every component it sets -> its version"},
    })  # fmt: skip


def _optional(name: str, properties: dict[str, Any]) -> Schema:
    return _object(properties, sorted(p for p in properties if p != name))


CUSTOMER = _optional(_TRAIN, {
    "customerId": _STR, "logId": _INT, "operation": {"enum": ["upgrade", "rollback"]}, "status": _STR,
    "wave": _INT, "attempt": _INT, "runName": _OPT_STR, "fromVersion": _OPT_STR, "toVersion": _STR,
    "versionBefore": _OPT_STR, "versionAfter": _OPT_STR, "error": _OPT_STR, "startedAt": _TIME,
    "completedAt": _TIME, "durationSeconds": _OPT_NUM,
    "components": {"type": ["object", "null"], "description": "a release train's row: each component's from, to, "
                   "before and after, and the digests the pre-flight resolved for it", "additionalProperties": _object(
                       {"from": _OPT_STR, "to": _OPT_STR, "before": _OPT_STR, "after": _OPT_STR,
                        "imageRepository": _STR, "targetDigest": _STR, "rollbackDigest": _STR}, ["from", "to"])},
})  # fmt: skip

BUDGET = _object({"wave": _INT, "failed": _INT, "size": _INT, "tolerated": _INT, "consumed": {"type": "number"}})
_OPT_BUDGET = {"anyOf": [BUDGET, {"type": "null"}]}
RUN = _object({"runName": _STR, "failure": _OPT_STR, "kind": _STR, "reason": _STR, "wholeUpgrade": {"type": "boolean"},
               "completed": _INT, "failed": _INT, "scope": {"enum": ["upgrade", "customer", "abort", "wave", None]},
               "wave": {"type": ["integer", "null"], "description": "scope wave: the wave rolled back (0-based)"}},
              ["runName"])  # fmt: skip

ANALYSIS_CHECK = _object({"check": _STR, "verdict": {"enum": ["pass", "fail", "inconclusive"]}, "reason": _STR,
                          "pValue": _OPT_NUM})  # fmt: skip
ANALYSIS = {"analysis": _object({"wave": _INT, "verdict": {"enum": ["pass", "fail", "inconclusive"]}, "reason": _STR,
                                  "checks": {"type": "array", "items": ANALYSIS_CHECK}})}  # fmt: skip

# What each detail type adds to the common fields.
_SECTIONS: dict[str, dict[str, Any]] = {
    events.UPGRADE_STARTED: {"run": RUN},
    events.WAVE_STARTED: {"wave": _object({"wave": _INT, "size": _INT})},
    events.WAVE_FINISHED: {
        "wave": _object(
            {
                "wave": _INT,
                "runName": _STR,
                "operation": {"enum": ["upgrade", "rollback"]},
                "size": _INT,
                "completed": _INT,
                "failed": _INT,
                "skipped": _INT,
                "budget": _OPT_BUDGET,
            }
        )
    },  # fmt: skip
    events.GATE_WAITING: {
        "gate": _object(
            {
                "kind": {"enum": ["approval", "bake"]},
                "wave": _INT,
                "seconds": _OPT_INT,
                "continueCommand": _OPT_STR,
                "abortCommand": _STR,
            }
        )
    },  # fmt: skip
    events.GATE_CONTINUED: {
        "gate": _object(
            {"kind": {"const": "approval"}, "wave": _OPT_INT, "continuedBy": _OPT_STR, "waitedSeconds": _OPT_NUM}
        )
    },
    events.UPGRADE_HALTED: {"halt": _object({"reason": _STR, "budget": _OPT_BUDGET})},
    events.UPGRADE_ABORTED: {
        "abort": _object(
            {
                "reason": _STR,
                "abortedBy": _OPT_STR,
                "rollback": {"type": "boolean"},
                "stoppedRuns": {"type": "array", "items": _STR},
            }
        )
    },  # fmt: skip
    events.UPGRADE_RESUMED: {
        "resume": _object(
            {
                "runName": _STR,
                "attempt": _INT,
                "customers": _INT,
                "retryFailed": {"type": "boolean"},
                "requestedBy": _OPT_STR,
            }
        )
    },  # fmt: skip
    events.RUN_RECONCILED: {"run": RUN},
    events.UPGRADE_FINISHED: {"run": RUN},
    events.ROLLBACK_FINISHED: {"run": RUN},
    events.CUSTOMER_UPGRADED: {"customer": CUSTOMER},
    events.CUSTOMER_FAILED: {"customer": CUSTOMER},
    events.CUSTOMER_ROLLED_BACK: {"customer": CUSTOMER},
    events.CUSTOMER_ROLLBACK_FAILED: {"customer": CUSTOMER},
    events.NOTICE_UPCOMING: {
        "customer": CUSTOMER,
        "notice": _object(
            {
                "plannedStart": {"type": "string", "format": "date-time"},
                "leadSeconds": _INT,
                "window": {"type": ["object", "null"]},
            }
        ),
    },  # fmt: skip
    events.NOTICE_DONE: {"customer": CUSTOMER, "notice": _object({"outcome": {"enum": ["upgraded", "rolled_back"]}})},
    events.NOTICE_CANCELLED: {"customer": CUSTOMER, "notice": _object({"reason": _STR})},
    events.ANALYSIS_PASSED: ANALYSIS,
    events.ANALYSIS_FAILED: ANALYSIS,
    events.ANALYSIS_INCONCLUSIVE: ANALYSIS,
    events.IMAGE_TAG_MOVED: {
        "image": _object(
            {
                "repository": _STR,
                "tag": _STR,
                "pinnedDigest": {"type": "string", "description": "what the deploy resolved and every wave installs"},
                "currentDigest": {"type": ["string", "null"], "description": "what the tag names now; null: gone"},
                "pinnedDigestPresent": {
                    "type": "boolean",
                    "description": "false: the registry lost the pinned digest too, and the upgrade halts",
                },
                "wave": {"type": "integer", "description": "the wave (0-based) before which it was found"},
                "customers": {"type": "integer", "description": "the wave's customers pinned to it"},
            }
        )
    },
}
_NO_UPGRADE = {events.DRIFT_FOUND: {
    "customer": _object({"customerId": _STR, "namespace": _STR}),
    "drift": _object({"component": _STR, "recorded": _OPT_STR, "release": _OPT_STR}),
    "syncId": _INT,
}}  # fmt: skip


def schema_for(detail_type: str) -> Schema:
    common: dict[str, Any] = {
        "eventId": {"type": "string", "pattern": "^[0-9]+$", "description": "unique; receivers drop ids seen"},
        "eventKey": {"type": "string", "description": "what happened, e.g. wave-started:<run>:<wave>"},
        "severity": {"enum": ["info", "attention", "critical"]},
        "component": {"type": ["string", "null"]},
        "occurredAt": {"type": "string", "format": "date-time"},
    }
    sections = _NO_UPGRADE.get(detail_type)
    if sections is None:
        sections = {"upgrade": upgrade_schema(), **_SECTIONS[detail_type]}
    schema = _object({**common, **sections})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://customer-upgrades.example.com/events/{file_name(detail_type)}",
        "title": detail_type,
        "description": f"`detail` of the EventBridge event source `{events.SOURCE}`, detail-type `{detail_type}` "
        f"(default severity {events.DETAIL_TYPES[detail_type]}).",
        **schema,
    }


def file_name(detail_type: str) -> str:
    return detail_type.lower().replace(" ", "-") + ".schema.json"


def render(detail_type: str) -> str:
    return json.dumps(schema_for(detail_type), indent=2) + "\n"


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "docs/events")
    folder.mkdir(parents=True, exist_ok=True)
    for detail_type in events.DETAIL_TYPES:
        (folder / file_name(detail_type)).write_text(render(detail_type), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
