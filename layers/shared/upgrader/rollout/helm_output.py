"""Helm's output: stored by the worker that read the Job, redacted, kept for a bounded time, shown in full
only behind its own permission.

The worker that sees a helm Job end (check_helm_job, or the reconciler for a Job nobody waits for) writes
its pod log here itself: the output never travels in Step Functions state (so never in an execution's
history or CloudWatch Logs). In the same transaction the customer's log row gets a summary of it: the
output without its NOTES section (the chart's own text, where credentials are printed most), under a
header naming the step (`--- switch ---`, `--- automatic rollback ---`, ...). GET .../logs (the viewer
policy) shows that summary; GET .../logs/{logId}/output (the HelmOutputReader policy) the full output.
Both are redacted (`upgrader.infra.redaction`) before they are written. The reconciler's sweep deletes full
outputs older than HELM_OUTPUT_RETENTION_DAYS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from upgrader.infra.db import columns, select

if TYPE_CHECKING:
    from upgrader.contract.models import HelmOutputResponse
    from upgrader.infra.db import Database

# The header a Job's summary gets in the log row's output, by what the step was (None: the row's first Job).
_HEADERS = {"switch": "--- switch ---", "finalize": "--- finalize ---", "autorollback": "--- automatic rollback ---",
            "recover_after": "--- recovery ---", "recover": "--- recovery before the upgrade ---"}  # fmt: skip
EXPIRE_BATCH = 1000  # full outputs deleted per sweep at most (the next sweep takes the rest)


def header_for(stage: str, event_stage: str | None) -> str | None:
    """The summary's header: the step that ran this Job (an automatic rollback or a recovery after a killed
    Job is named by the state machine's stage, a blue-green step or a pre-check recovery by the Job's)."""
    if event_stage in ("autorollback", "recover_after"):
        return _HEADERS[event_stage]
    return _HEADERS.get(stage)


def summary(output: str, *, log_id: int, header: str | None) -> str:
    """What the viewer sees of a Job's (redacted) output: everything before helm's NOTES section, and where
    the rest is."""
    lines = output.splitlines()
    notes = next((i for i, line in enumerate(lines) if line.rstrip() == "NOTES:"), None)
    kept = lines if notes is None else lines[:notes]
    if notes is not None:
        kept.append(f"[NOTES: {len(lines) - notes - 1} lines, in the full output (logs/{log_id}/output)]")
    return "\n".join(([header] if header else []) + kept)


class HelmOutputStore(Protocol):
    """Where a worker writes the helm output it read (`HelmOutputRepository` is the adapter)."""

    def record(self, log_id: int, job_name: str, *, stage: str, phase: str, output: str,
               header: str | None) -> bool: ...  # fmt: skip

    def expire(self, retention_days: int) -> int: ...


@dataclass(frozen=True, slots=True)
class HelmOutputRecord:
    """One `helm_outputs` row: a finished Job's redacted output."""

    job_name: str
    stage: str
    phase: str
    output: str
    recorded_at: datetime


_OUTPUT = columns(HelmOutputRecord)


class HelmOutputRepository:
    """The helm_outputs table (migration 060)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, log_id: int, job_name: str, *, stage: str, phase: str, output: str, header: str | None) -> bool:
        """Store one finished Job's (redacted) output and append its summary to the log row, once: a retried
        worker records nothing twice. True when this call recorded it."""
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO helm_outputs (log_id, job_name, stage, phase, output) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (log_id, job_name) DO NOTHING RETURNING log_id",
                (log_id, job_name, stage, phase, output),
            )
            if cur.fetchone() is None:
                return False
            cur.execute(
                "UPDATE customer_upgrade_logs SET output = NULLIF(concat_ws(E'\\n', output, %s::text), ''),"
                " updated_at = NOW() WHERE id = %s",
                (summary(output, log_id=log_id, header=header), log_id),
            )
            return True

    def of_log(self, upgrade_id: int, log_id: int) -> tuple[str | None, list[HelmOutputRecord]]:
        """(the log row's customer when the row belongs to the upgrade, its Jobs' outputs oldest first)."""
        with self._db.statement() as cur:
            cur.execute(
                "SELECT customer_id FROM customer_upgrade_logs WHERE id = %s AND upgrade_id = %s", (log_id, upgrade_id)
            )
            row = cur.fetchone()
            if row is None:
                return None, []
            query = f"SELECT {_OUTPUT} FROM helm_outputs WHERE log_id = %s ORDER BY recorded_at, job_name"
            return str(row["customer_id"]), select(cur, HelmOutputRecord, query, (log_id,))

    def expire(self, retention_days: int, limit: int = EXPIRE_BATCH) -> int:
        """Delete full outputs recorded more than `retention_days` ago (at most `limit`); how many."""
        with self._db.statement() as cur:
            cur.execute(
                "DELETE FROM helm_outputs WHERE (log_id, job_name) IN (SELECT log_id, job_name FROM helm_outputs"
                " WHERE recorded_at < NOW() - make_interval(days => %s) ORDER BY recorded_at LIMIT %s)",
                (retention_days, limit),
            )
            return int(cur.rowcount or 0)


def get_helm_output(upgrade_id: int, log_id: int, *, outputs: HelmOutputRepository,
                    retention_days: int) -> HelmOutputResponse:  # fmt: skip
    """GET /api/upgrades/{upgradeId}/logs/{logId}/output: the full (redacted) output of the row's Jobs.
    LogRowNotFound (404) when the log row is not one of that upgrade's."""
    from upgrader.contract.base import from_record
    from upgrader.contract.models import HelmOutput, HelmOutputResponse
    from upgrader.infra.errors import LogRowNotFound

    customer_id, found = outputs.of_log(upgrade_id, log_id)
    if customer_id is None:
        raise LogRowNotFound(f"log entry {log_id} of upgrade {upgrade_id} not found")
    return HelmOutputResponse(
        upgrade_id=str(upgrade_id), log_id=str(log_id), customer_id=customer_id, retention_days=retention_days,
        outputs=[from_record(HelmOutput, r) for r in found],
    )  # fmt: skip
