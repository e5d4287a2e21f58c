"""The images' pre-flight of a plan and a deploy (issue 22, docs/images.md): every targeted customer's target
image (the repository its release names + the new tag) and rollback image (+ the tag it runs now) resolved to a
digest, each distinct image once per request. A deploy never trusts an old plan: each asks again.

IMAGE_PREFLIGHT says which customers are checked: `auto` (default) those whose repository discovery read
(the others are counted as unchecked, in the answer and on the upgrade), `required` every one (a customer
without a known repository is refused), `off` none (recorded as such).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from upgrader.contract.image_models import ImageProblemView, PlannedImages
from upgrader.images.preflight import (
    CustomerImages,
    ImageProblem,
    ImagesRefused,
    Preflight,
    customer_images,
    run_preflight,
)
from upgrader.images.references import MutableTags
from upgrader.images.registry import ImageRegistry
from upgrader.infra.components import default_image_tag_keys, sibling_key
from upgrader.infra.errors import InvalidValue
from upgrader.infra.settings import Settings
from upgrader.rollout.selection import Candidate

RegistryFactory = Callable[[], ImageRegistry]


@dataclass(frozen=True)
class ImageCheck:
    """What the registry said about the targeted customers' images, and what a deploy may do with it."""

    mode: str
    allow_no_rollback_image: bool
    preflight: Preflight | None = None
    unchecked: int = 0
    problems: list[ImageProblem] = field(default_factory=list)  # found before asking (no repository, bad value)
    repositories: dict[str, str] = field(default_factory=dict)  # customer -> the repository asked

    @property
    def refusal(self) -> ImagesRefused | None:
        """The 422 a deploy answers with, or None when it may start."""
        found = self.preflight.refusal(allow_no_rollback_image=self.allow_no_rollback_image) if self.preflight else None
        refused = self.problems + (found.problems if found else [])
        return ImagesRefused(refused) if refused else None

    def digests(self, customer_id: str) -> tuple[str | None, str | None, str | None]:
        """(repository, target digest, rollback digest) of a customer's row; None where not checked."""
        if self.preflight is None:
            return None, None, None
        target = self.preflight.targets.get(customer_id)
        rollback = self.preflight.rollbacks.get(customer_id)
        return (self.repositories.get(customer_id), target.digest if target else None,
                rollback.digest if rollback else None)  # fmt: skip

    def every_problem(self) -> list[ImageProblem]:
        if self.preflight is None:
            return list(self.problems)
        return (
            self.problems + self.preflight.missing_targets + self.preflight.missing_rollbacks + self.preflight.mutable
        )

    def view(self) -> PlannedImages:
        targets = Counter(
            str(r.reference.pinned(r.digest)) for r in (self.preflight.targets.values() if self.preflight else [])
        )
        return PlannedImages(
            preflight=self.mode,  # type: ignore[arg-type]
            checked=len(self.repositories),
            unchecked=self.unchecked,
            registry_requests=self.preflight.distinct_images if self.preflight else 0,
            targets=dict(sorted(targets.items())),
            allow_no_rollback_image=self.allow_no_rollback_image,
            problems=[ImageProblemView.model_validate(p.as_dict()) for p in self.every_problem()],
        )

    def parameters(self) -> dict[str, Any]:
        """What the upgrade records of its pre-flight (system_upgrades.parameters.images)."""
        view = self.view()
        recorded = view.model_dump(mode="json", by_alias=True, exclude={"problems", "targets"})
        recorded["targets"] = view.targets
        if self.allow_no_rollback_image:
            recorded["withoutRollbackImage"] = sorted(
                {p.customer_id for p in self.every_problem() if p.role == "rollback"}
            )
        return recorded


def check_images(
    component: str,
    version: str,
    targets: Sequence[Candidate],
    *,
    settings: Settings,
    registry: RegistryFactory,
    allow_no_rollback_image: bool,
) -> ImageCheck:
    """The pre-flight over the customers a plan puts in its waves. Raises the registry's errors
    (RegistryUnavailable 503, RegistryUnauthorized 502, MalformedManifest 502): nothing is written then."""
    mode = settings.image_preflight
    if mode == "off" or not targets:
        return ImageCheck(mode, allow_no_rollback_image, unchecked=len(targets) if mode == "off" else 0)
    where = sibling_key({**default_image_tag_keys(), **settings.image_tag_keys}[component], "repository")
    wanted: list[CustomerImages] = []
    problems: list[ImageProblem] = []
    unchecked = 0
    for target in targets:
        if target.image_repository is None:
            if mode == "required":
                problems.append(ImageProblem(target.customer_id, "target", "(unknown)",
                                             f"its release names no image repository at {where}; a sync reads it"))  # fmt: skip
            else:
                unchecked += 1
            continue
        try:
            wanted.append(customer_images(target.customer_id, target.image_repository, version, target.current_version))
        except InvalidValue as exc:  # the release's repository value names no usable image
            problems.append(ImageProblem(target.customer_id, "target", target.image_repository, exc.reason))
    if not wanted:
        return ImageCheck(mode, allow_no_rollback_image, unchecked=unchecked, problems=problems)
    preflight = run_preflight(wanted, registry(), mutable_tags=MutableTags(settings.mutable_tag_pattern))
    repositories = {w.customer_id: w.target.name for w in wanted}
    return ImageCheck(mode, allow_no_rollback_image, preflight, unchecked, problems, repositories)
