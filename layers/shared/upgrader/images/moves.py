"""A tag moved during the rollout is reported, never followed (issue 22, docs/images.md).

Before each wave of an upgrade run (PrepareWave, the wave's first slice), the tags its customers were pinned for
are resolved again, each distinct (repository, tag, pinned digest) once. A tag that now names another digest, or
no image at all, is recorded once per upgrade, image and digest found (`image_tag_moves`), with an `Image Tag
Moved` event written in the same transaction; the upgrade's status lists them (`movedTags`). The wave still
installs the pinned digest: every helm Job sets `tag@digest`, so nothing follows the tag.

For a moved tag the pinned digest itself is asked too: when the registry no longer holds it (a moved tag's old
image cleaned up, or a deleted tag's), every customer of the wave would fail to pull it, so the upgrade halts
before the wave, in the same transaction, with a reason naming the image.

The re-check only reports. A registry that does not answer (or refuses us) is written into the step's state
(`imageRecheck.error`) and the wave goes on: the pinned digests need no tag, and the pre-flight already proved
them when the deploy started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from upgrader.images.preflight import ResolutionCache
from upgrader.images.references import image_of
from upgrader.images.registry import ImageRegistry, RegistryError, Resolved
from upgrader.infra.db import Database, select
from upgrader.notifications import events
from upgrader.rollout.halts import halt


@dataclass(frozen=True, slots=True)
class PinnedTag:
    """A tag the wave's customers were pinned for: `repository:tag` resolved to `digest` when the deploy began."""

    repository: str
    tag: str
    digest: str
    customers: int


@dataclass(frozen=True, slots=True)
class MovedTag:
    """A pinned tag that names another digest now (`current_digest`), or nothing (None: deleted)."""

    repository: str
    tag: str
    pinned_digest: str
    current_digest: str | None
    customers: int
    pinned_present: bool = True  # False: the registry no longer holds the pinned digest either

    @property
    def halt_reason(self) -> str:
        return (f"image {self.repository}@{self.pinned_digest} (tag {self.tag}, pinned by the deploy) is gone from "
                "the registry: the wave's customers could not pull it; push it back and resume")  # fmt: skip

    def event_key(self, upgrade_id: int) -> str:
        return f"image-tag-moved:{upgrade_id}:{self.repository}:{self.tag}:{self.current_digest or 'deleted'}"

    def detail(self, wave: int) -> dict[str, Any]:
        return {"image": {"repository": self.repository, "tag": self.tag, "pinnedDigest": self.pinned_digest,
                          "currentDigest": self.current_digest, "pinnedDigestPresent": self.pinned_present,
                          "wave": wave, "customers": self.customers}}  # fmt: skip


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


def find_moves(pinned: Sequence[PinnedTag], registry: ImageRegistry) -> list[MovedTag]:
    """The pinned tags that name another digest now, or nothing, and whether the registry still holds the pinned
    digest; each distinct image asked once. Raises the registry's errors (RegistryError)."""
    cache = ResolutionCache(registry)
    moved = []
    for one in pinned:
        answer = cache.resolve(image_of(one.repository, one.tag))
        current = answer.digest if isinstance(answer, Resolved) else None
        if current != one.digest:
            present = isinstance(cache.resolve(image_of(one.repository, f"{one.tag}@{one.digest}")), Resolved)
            moved.append(MovedTag(one.repository, one.tag, one.digest, current, one.customers, present))
    return moved


# The wave's pinned targets: every upgrade row of the run's wave the pre-flight resolved.
_PINNED = """
SELECT image_repository AS repository, to_version AS tag, target_digest AS digest, count(*)::int AS customers
  FROM customer_upgrade_logs
 WHERE run_name = %s AND wave = %s AND operation = 'upgrade'
   AND image_repository IS NOT NULL AND target_digest IS NOT NULL
 GROUP BY image_repository, to_version, target_digest
 ORDER BY image_repository, to_version, target_digest
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
            return select(cur, PinnedTag, _PINNED, (run_name, wave))

    def record(self, upgrade_id: int, wave: int, moved: Sequence[MovedTag]) -> int:
        """Each move once per upgrade (a retried step, a later wave finding the same digest: nothing new), with
        its event in the same transaction, and the halt when a pinned digest is gone (first reason wins). How many
        were new."""
        new = 0
        with self._db.transaction() as cur:
            for one in moved:
                cur.execute(_RECORD, (upgrade_id, one.repository, one.tag, one.pinned_digest, one.current_digest,
                                      one.pinned_present, wave, one.customers))  # fmt: skip
                if cur.fetchone() is not None:
                    new += 1
                    events.upgrade_event(cur, events.IMAGE_TAG_MOVED, upgrade_id, one.event_key(upgrade_id),
                                         one.detail(wave))  # fmt: skip
                if not one.pinned_present:
                    halt(cur, upgrade_id, one.halt_reason)
        return new

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
        return {"checked": 0, "moved": []}
    try:
        moved = find_moves(pinned, registry())
    except RegistryError as exc:
        return {"checked": 0, "moved": [], "error": str(exc)[:500]}
    moves.record(upgrade_id, wave, moved)
    return {"checked": len(pinned), "moved": [asdict(m) for m in moved]}
