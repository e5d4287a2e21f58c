"""A tag moved during the rollout is reported, never followed (issue 22, docs/images.md).

Before each wave of an upgrade run (PrepareWave, the wave's first slice), the tags its customers were pinned for
are resolved again, each distinct (repository, tag, pinned digest) once. A tag that now names another digest, or
no image at all, is recorded once per upgrade, image and digest found (`image_tag_moves`), with an `Image Tag
Moved` event written in the same transaction (`upgrader.rollout.image_recheck`); the upgrade's status lists them
(`movedTags`). The wave still
installs the pinned digest: every helm Job sets `tag@digest`, so nothing follows the tag.

For a moved tag the pinned digest itself is asked too: when the registry no longer holds it (a moved tag's old
image cleaned up, or a deleted tag's), every customer of the wave would fail to pull it, so the upgrade halts
before the wave, in the same transaction, with a reason naming the image.

The re-check only reports. A registry that does not answer (or refuses us) is written into the step's state
(`imageRecheck.error`) and the wave goes on: the pinned digests need no tag, and the pre-flight already proved
them when the deploy started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from upgrader.images.preflight import ResolutionCache
from upgrader.images.references import image_of
from upgrader.images.registry import ImageRegistry, Resolved


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
