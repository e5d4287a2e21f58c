"""SQL of a version's evidence on each ring (`customer_upgrade_logs` + `system_upgrades`) and of forced
promotions. Parameterized always; each public method is one unit of work.

A row counts on `customer_upgrade_logs.ring`, the customer's ring when the deploy wrote it, never on the
customer's ring today. Rows written before rings (ring NULL) are evidence on no ring.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from upgrader.infra.db import Database, Row
from upgrader.infra.vocabulary import ACTIVE_UPGRADE_STATUSES
from upgrader.promotion.evidence import RingEvidence, UpgradeTrace
from upgrader.promotion.rings import RingOrder
from upgrader.promotion.rules import Promotion

# A customer succeeded when its upgrade row completed and was not rolled back since (automatically: the row
# ends rolled_back; by a rollback run: a completed rollback row points at it), as rollout/rollbacks.py reads it.
# A release train's rows count for each of its components (`components`, migration 090, its GIN index).
_EVIDENCE = """
SELECT l.ring, u.id AS upgrade_id, u.status, u.halt_reason, u.status = ANY(%(active)s) AS active,
       COALESCE(u.completed_at, max(l.completed_at), u.updated_at) AS finished_at,
       count(*) FILTER (WHERE l.left_out IS NULL) AS targeted,
       count(*) FILTER (WHERE l.left_out IS NULL AND l.status = 'completed' AND NOT EXISTS (
           SELECT 1 FROM customer_upgrade_logs r
            WHERE r.operation = 'rollback' AND r.status = 'completed'
              AND (r.rollback_of = l.id
                   OR (r.rollback_of IS NULL AND r.upgrade_id = l.upgrade_id AND r.customer_id = l.customer_id))
       )) AS succeeded
  FROM customer_upgrade_logs l
  JOIN system_upgrades u ON u.id = l.upgrade_id
 WHERE l.operation = 'upgrade'
   AND ((l.component = %(component)s AND l.to_version = %(version)s)
        OR l.components @> jsonb_build_object(%(component)s::text, jsonb_build_object('to', %(version)s::text)))
   AND l.ring IS NOT NULL
 GROUP BY l.ring, u.id
 ORDER BY l.ring, u.id
"""


class EvidenceRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def evidence(self, component: str, version: str) -> dict[str, RingEvidence]:
        """The version's evidence on every ring it reached (a ring it never reached is absent)."""
        with self._db.statement() as cur:
            cur.execute(_EVIDENCE, {"component": component, "version": version,
                                    "active": list(ACTIVE_UPGRADE_STATUSES)})  # fmt: skip
            rows = cur.fetchall()
        traces: dict[str, list[UpgradeTrace]] = {}
        for r in rows:
            traces.setdefault(r["ring"], []).append(_trace(r))
        return {ring: RingEvidence.of(component, version, ring, found) for ring, found in traces.items()}

    def populated_rings(self, order: RingOrder) -> set[str]:
        """The rings that have at least one active customer (a customer without a ring is in the default)."""
        with self._db.statement() as cur:
            cur.execute("SELECT DISTINCT ring FROM customers WHERE status = 'active'")
            return {order.ring_of(r["ring"]) for r in cur.fetchall()}

    def overrides(self, component: str, version: str) -> list[dict[str, Any]]:
        """The promotions of this version that were forced past a refusal, oldest first."""
        with self._db.statement() as cur:
            cur.execute(
                "SELECT id, upgrade_id, ring, missing, reason, forced_by, created_at FROM promotion_overrides"
                " WHERE component = %s AND version = %s ORDER BY id",
                (component, version),
            )
            return cur.fetchall()


def record_override(cur: psycopg.Cursor[Row], upgrade_id: int, promotion: Promotion) -> None:
    """Record a forced promotion, in the deploy's own transaction (the upgrade and its override together)."""
    if promotion.forced is None:
        return
    cur.execute(
        "INSERT INTO promotion_overrides (upgrade_id, component, version, ring, missing, reason, forced_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (upgrade_id, promotion.component, promotion.version, promotion.ring,
         Jsonb([m.as_dict() for m in promotion.missing]), promotion.forced.reason, promotion.forced.by),
    )  # fmt: skip


def _trace(row: Row) -> UpgradeTrace:
    finished: datetime | None = None if row["active"] else row["finished_at"]
    return UpgradeTrace(
        upgrade_id=int(row["upgrade_id"]),
        status=row["status"],
        targeted=int(row["targeted"]),
        succeeded=int(row["succeeded"]),
        halt_reason=row["halt_reason"],
        finished_at=finished,
        active=bool(row["active"]),
    )
