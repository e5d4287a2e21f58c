"""The images report (GET /api/fleet/images, docs/images.md): every image digest an existing customer runs or
needs for a rollback, so a registry's cleanup policy can keep them. Read from what the deploys resolved: each
customer's latest upgrade row of a component that has digests (`customer_upgrade_logs.target_digest`,
`rollback_digest`; a release train's other components: the row's `components`), against the version its release holds now (the inventory):

- it runs the upgrade's version: the target digest is running, the rollback digest is needed for a rollback;
- it runs the version the upgrade came from (not started yet, failed, rolled back): the rollback digest is running.

Customer components whose images no deploy resolved (pre-flight off, unknown repository, never upgraded since)
are counted as `unresolved`: the report cannot name their digests."""

from __future__ import annotations

from typing import Any

from upgrader.infra.db import Database

MAX_CUSTOMERS = 100  # customer ids named per image (the counts are exact)

# Each customer component's latest upgrade row with digests: a row's own component (its columns), or a release
# train's other component (the row's `components`: imageRepository, targetDigest, rollbackDigest, as
# upgrader.rollout.run_records.TRAIN_DIGESTS names them).
_LATEST = """
resolved AS (
  SELECT l.id, l.customer_id, l.component, l.image_repository, l.from_version, l.to_version, l.target_digest,
         l.rollback_digest
    FROM customer_upgrade_logs l
   WHERE l.operation = 'upgrade' AND l.target_digest IS NOT NULL
  UNION ALL
  SELECT l.id, l.customer_id, e.key, e.value ->> 'imageRepository', e.value ->> 'from', e.value ->> 'to',
         e.value ->> 'targetDigest', e.value ->> 'rollbackDigest'
    FROM customer_upgrade_logs l CROSS JOIN LATERAL jsonb_each(l.components) e
   WHERE l.operation = 'upgrade' AND l.components IS NOT NULL AND e.key <> l.component
     AND e.value ->> 'targetDigest' IS NOT NULL
), latest AS (
  SELECT DISTINCT ON (customer_id, component) * FROM resolved ORDER BY customer_id, component, id DESC
)"""

_REPORT = f"""
WITH {_LATEST}, held AS (
  SELECT x.customer_id, x.image_repository AS repository, v.version, x.from_version,
         CASE WHEN v.version = x.to_version THEN x.target_digest
              WHEN v.version = x.from_version THEN x.rollback_digest END AS running,
         CASE WHEN v.version = x.to_version THEN x.rollback_digest END AS rollback
    FROM latest x
    JOIN customers c ON c.id = x.customer_id AND c.status <> 'decommissioned'
    JOIN customer_component_versions v ON v.customer_id = x.customer_id AND v.component = x.component
), needed AS (
  SELECT customer_id, repository, running AS digest, version AS tag, 'running' AS role FROM held WHERE running IS NOT NULL
  UNION ALL
  SELECT customer_id, repository, rollback, from_version, 'rollback' FROM held WHERE rollback IS NOT NULL
)
SELECT repository, digest, array_agg(DISTINCT tag ORDER BY tag) AS tags,
       count(*) FILTER (WHERE role = 'running') AS running, count(*) FILTER (WHERE role = 'rollback') AS rollback_for,
       (array_agg(DISTINCT customer_id ORDER BY customer_id))[1:%(named)s] AS customers
  FROM needed GROUP BY repository, digest ORDER BY repository, digest
"""

_UNRESOLVED = f"""
WITH {_LATEST}
SELECT count(*) AS n
  FROM customer_component_versions v JOIN customers c ON c.id = v.customer_id AND c.status <> 'decommissioned'
 WHERE NOT EXISTS (
   SELECT 1 FROM latest l
    WHERE l.customer_id = v.customer_id AND l.component = v.component
      AND (v.version = l.to_version OR (v.version = l.from_version AND l.rollback_digest IS NOT NULL)))
"""


class ImageReportRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def report(self) -> tuple[list[dict[str, Any]], int]:
        """(each image still running or needed for a rollback, customer components whose digest is unknown)."""
        with self._db.transaction() as cur:
            cur.execute(_REPORT, {"named": MAX_CUSTOMERS})
            images = [dict(row) for row in cur.fetchall()]
            cur.execute(_UNRESOLVED)
            unresolved = int((cur.fetchone() or {"n": 0})["n"])
        return images, unresolved
