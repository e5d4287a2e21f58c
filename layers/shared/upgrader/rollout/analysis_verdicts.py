"""A wave's analysis verdict, recorded once with its lifecycle event (Analysis Passed / Failed / Inconclusive)
and each measurement's own verdict, in the same transaction: the outbox publishes what the database holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from upgrader.analysis.measurements import STORE_MEASUREMENT_VERDICTS, Measurement, verdict_parameters
from upgrader.infra.db import Database
from upgrader.notifications import events

EVENT_OF = {
    "pass": events.ANALYSIS_PASSED,
    "fail": events.ANALYSIS_FAILED,
    "inconclusive": events.ANALYSIS_INCONCLUSIVE,
}


def record_verdict(db: Database, upgrade_id: int, wave: int, verdict: str, reason: str,
                   checks: list[dict[str, Any]], judged: Sequence[Measurement] = ()) -> str:  # fmt: skip
    """The wave's verdict, its event and the verdict of each `judged` measurement; a retried JudgeWave keeps
    the first verdict (returned) and changes nothing: no second event, the measurements' verdicts as first given."""
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO analysis_verdicts (upgrade_id, wave, verdict, reason, checks) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (upgrade_id, wave) DO NOTHING RETURNING verdict",
            (upgrade_id, wave, verdict, reason, Jsonb(checks)),
        )
        if cur.fetchone() is None:
            cur.execute("SELECT verdict FROM analysis_verdicts WHERE upgrade_id = %s AND wave = %s", (upgrade_id, wave))
            row = cur.fetchone()
            return str(row["verdict"]) if row else verdict
        if any(m.verdict is not None for m in judged):
            cur.execute(STORE_MEASUREMENT_VERDICTS, verdict_parameters(upgrade_id, wave, judged))
        summary = [{"check": c["check"], "verdict": c["verdict"], "reason": c["reason"],
                    "pValue": _number((c.get("evidence") or {}).get("p"))} for c in checks]  # fmt: skip
        detail = {"analysis": {"wave": wave, "verdict": verdict, "reason": reason, "checks": summary}}
        events.upgrade_event(cur, EVENT_OF[verdict], upgrade_id, f"analysis:{upgrade_id}:{wave}", detail)
        return verdict


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
