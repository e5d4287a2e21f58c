"""The re-check of a wave's pinned image tags (issue 22, docs/images.md "A moved tag is reported, never
followed"): what PrepareWave runs before each wave of an upgrade run. `upgrader.images.moves` says what moved;
this records it once per upgrade, image and digest found (`image_tag_moves`), with its `Image Tag Moved` event
and, when the registry lost the pinned digest too, the upgrade's halt, all in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from upgrader.images.moves import MovedTag, PinnedTag, find_moves
from upgrader.images.registry import ImageRegistry, RegistryError
from upgrader.infra.db import Database, select
from upgrader.notifications import events
from upgrader.rollout.halts import halt


@dataclass(frozen=True, slots=True)
class MovedTagRecord:
    """A moved tag as recorded for an upgrade (its status's `movedTags`)."""

    repository: str
    tag: str
    pinned_digest: str
    current_digest: str | None
    pinned_present: bool
    wave: int
    customers: int
    detected_at: Any


# The wave's pinned targets: every upgrade row of the run's wave the pre-flight resolved, and a release train's
# other components (their digests are in the row's `components`, as upgrader.fleet.image_report reads them).
_PINNED = """
WITH pinned AS (
  SELECT image_repository AS repository, to_version AS tag, target_digest AS digest
    FROM customer_upgrade_logs
   WHERE run_name = %(run)s AND wave = %(wave)s AND operation = 'upgrade'
     AND image_repository IS NOT NULL AND target_digest IS NOT NULL
  UNION ALL
  SELECT e.value ->> 'imageRepository', e.value ->> 'to', e.value ->> 'targetDigest'
    FROM customer_upgrade_logs l CROSS JOIN LATERAL jsonb_each(l.components) e
   WHERE l.run_name = %(run)s AND l.wave = %(wave)s AND l.operation = 'upgrade' AND l.components IS NOT NULL
     AND e.key <> l.component AND e.value ->> 'imageRepository' IS NOT NULL AND e.value ->> 'targetDigest' IS NOT NULL
)
SELECT repository, tag, digest, count(*)::int AS customers
  FROM pinned GROUP BY repository, tag, digest ORDER BY repository, tag, digest
"""
_RECORD = """
INSERT INTO image_tag_moves (upgrade_id, repository, tag, pinned_digest, current_digest, pinned_present, wave,
                             customers)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (upgrade_id, repository, tag, pinned_digest, (COALESCE(current_digest, ''))) DO NOTHING
RETURNING id
"""
MAX_LISTED = 100


class ImageMoveRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def pinned_tags(self, run_name: str, wave: int) -> list[PinnedTag]:
        with self._db.transaction() as cur:
            return select(cur, PinnedTag, _PINNED, {"run": run_name, "wave": wave})

    def record(self, upgrade_id: int, wave: int, moved: Sequence[MovedTag]) -> None:
        """Each move once per upgrade (a retried step, a later wave finding the same digest: nothing new), with
        its event in the same transaction, and the halt when a pinned digest is gone (first reason wins)."""
        with self._db.transaction() as cur:
            for one in moved:
                cur.execute(_RECORD, (upgrade_id, one.repository, one.tag, one.pinned_digest, one.current_digest,
                                      one.pinned_present, wave, one.customers))  # fmt: skip
                if cur.fetchone() is not None:
                    events.upgrade_event(cur, events.IMAGE_TAG_MOVED, upgrade_id, one.event_key(upgrade_id),
                                         one.detail(wave))  # fmt: skip
                if not one.pinned_present:
                    halt(cur, upgrade_id, one.halt_reason)

    def moved(self, upgrade_id: int) -> list[MovedTagRecord]:
        with self._db.transaction() as cur:
            return select(
                cur, MovedTagRecord,
                "SELECT repository, tag, pinned_digest, current_digest, pinned_present, wave, customers, detected_at "
                "FROM image_tag_moves WHERE upgrade_id = %s ORDER BY id LIMIT %s",
                (upgrade_id, MAX_LISTED),
            )  # fmt: skip


def recheck_wave(
    upgrade_id: int, run_name: str, wave: int, *, moves: ImageMoveRepository, registry: Callable[[], ImageRegistry]
) -> dict[str, Any]:
    """The re-check before a wave: what PrepareWave puts in its state (`imageRecheck`)."""
    pinned = moves.pinned_tags(run_name, wave)
    if not pinned:
        return {"checked": 0, "moved": [], "error": None}
    try:
        moved = find_moves(pinned, registry())
    except RegistryError as exc:
        return {"checked": 0, "moved": [], "error": str(exc)[:500]}
    moves.record(upgrade_id, wave, moved)
    return {"checked": len(pinned), "moved": [asdict(m) for m in moved], "error": None}
