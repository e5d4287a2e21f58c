"""Where an analysis reads its cohorts and keeps its measurements and verdicts (PostgreSQL, parameterized SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from upgrader.analysis.measurements import INSERT_MEASUREMENT, Measurement, StoredMeasurement
from upgrader.analysis.rounds import Customer
from upgrader.infra.db import Database

MAX_SHOWN = 500


class AnalysisRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def component(self, upgrade_id: int) -> str:
        with self._db.transaction() as cur:
            cur.execute("SELECT component FROM system_upgrades WHERE id = %s", (upgrade_id,))
            row = cur.fetchone()
            return str(row["component"]) if row else ""

    def upgraded(self, upgrade_id: int, wave: int) -> list[Customer]:
        """The wave's customers the upgrade completed (the cohort measured), on the version they now run."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT customer_id, COALESCE(namespace, '') AS namespace, to_version FROM customer_upgrade_logs"
                " WHERE upgrade_id = %s AND wave = %s AND status = 'completed' ORDER BY customer_id",
                (upgrade_id, wave),
            )
            return [Customer(r["customer_id"], r["namespace"], r["to_version"]) for r in cur.fetchall()]

    def control_candidates(self, upgrade_id: int) -> list[Customer]:
        """The upgrade's customers of later waves, not started yet: still on the old version."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT customer_id, COALESCE(namespace, '') AS namespace, COALESCE(from_version, '') AS version"
                " FROM customer_upgrade_logs WHERE upgrade_id = %s AND status = 'pending' AND wave >= 0"
                " ORDER BY customer_id",
                (upgrade_id,),
            )
            return [Customer(r["customer_id"], r["namespace"], r["version"]) for r in cur.fetchall()]

    def store(self, upgrade_id: int, wave: int, round_index: int, measured: Sequence[Measurement]) -> None:
        with self._db.transaction() as cur:
            for m in measured:
                cur.execute(INSERT_MEASUREMENT, StoredMeasurement(upgrade_id, wave, round_index, m).row())

    def measurements(self, upgrade_id: int, wave: int | None = None, limit: int = MAX_SHOWN) -> list[dict[str, Any]]:
        """Newest round first (of one wave, or of every wave), bounded."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT * FROM analysis_measurements WHERE upgrade_id = %s AND (%s::int IS NULL OR wave = %s)"
                " ORDER BY wave DESC, round DESC, check_name, cohort DESC, customer_id LIMIT %s",
                (upgrade_id, wave, wave, limit),
            )
            return list(cur.fetchall())

    def verdicts(self, upgrade_id: int, limit: int = MAX_SHOWN) -> list[dict[str, Any]]:
        """Newest wave first."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT * FROM analysis_verdicts WHERE upgrade_id = %s ORDER BY wave DESC LIMIT %s", (upgrade_id, limit)
            )
            return list(cur.fetchall())

    def failed_wave(self, upgrade_id: int) -> int | None:
        """The newest wave the gate failed (None: none failed)."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT max(wave) AS wave FROM analysis_verdicts WHERE upgrade_id = %s AND verdict = 'fail'",
                (upgrade_id,),
            )
            row = cur.fetchone()
            return None if row is None or row["wave"] is None else int(row["wave"])

    def wave_rollback(self, upgrade_id: int, wave: int) -> str | None:
        """The status of the rollback run of the wave (an analysis fail with autoRollback); None: not rolled back."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT status FROM upgrade_runs WHERE upgrade_id = %s AND kind = 'rollback' AND scope = 'wave'"
                " AND wave = %s ORDER BY created_at DESC LIMIT 1",
                (upgrade_id, wave),
            )
            row = cur.fetchone()
            return None if row is None else str(row["status"])

    def parameters(self, upgrade_id: int) -> dict[str, Any] | None:
        """The upgrade's parameters ({} when it has none); None: no such upgrade."""
        with self._db.transaction() as cur:
            cur.execute("SELECT parameters FROM system_upgrades WHERE id = %s", (upgrade_id,))
            row = cur.fetchone()
            return None if row is None else dict(row["parameters"] or {})
