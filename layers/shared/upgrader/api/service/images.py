"""The images' pre-flight of a plan and a deploy (issue 22, docs/images.md): every targeted customer's target
image (the repository its release names + the new tag) and rollback image (+ the tag it runs now) resolved to a
digest, each distinct image once per request. A release train checks every one of its components (one cache for
the whole request). A deploy never trusts an old plan: each asks again.

IMAGE_PREFLIGHT says which customers are checked: `auto` (default) those whose repository discovery read
(the others are counted as unchecked, in the answer and on the upgrade), `required` every one (a customer
without a known repository is refused), `off` none (recorded as such).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from upgrader.contract.image_models import ImageProblemView, PlannedImages
from upgrader.images.preflight import (
    CustomerImages,
    ImageProblem,
    ImagesRefused,
    Preflight,
    ResolutionCache,
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
    """What the registry said about the targeted customers' images (every component of a release train), and what
    a deploy may do with it."""

    mode: str
    allow_no_rollback_image: bool
    preflights: dict[str, Preflight] = field(default_factory=dict)  # component -> what the registry said
    unchecked: int = 0
    problems: list[ImageProblem] = field(default_factory=list)  # found before asking (no repository, bad value)
    # component -> customer -> the repository asked
    repositories: dict[str, dict[str, str]] = field(default_factory=dict)
    registry_requests: int = 0  # distinct images resolved over every component
    checked: int = 0  # customers whose images of every component were resolved

    @property
    def refusal(self) -> ImagesRefused | None:
        """The 422 a deploy answers with, or None when it may start."""
        refused = list(self.problems)
        for preflight in self.preflights.values():
            if (found := preflight.refusal(allow_no_rollback_image=self.allow_no_rollback_image)) is not None:
                refused += found.problems
        return ImagesRefused(refused) if refused else None

    def digests(self, customer_id: str, component: str) -> tuple[str | None, str | None, str | None]:
        """(repository, target digest, rollback digest) of a customer's component; None where not checked."""
        preflight = self.preflights.get(component)
        if preflight is None:
            return None, None, None
        target = preflight.targets.get(customer_id)
        rollback = preflight.rollbacks.get(customer_id)
        return (self.repositories[component].get(customer_id), target.digest if target else None,
                rollback.digest if rollback else None)  # fmt: skip

    def every_problem(self) -> list[ImageProblem]:
        return self.problems + [
            p for f in self.preflights.values() for p in f.missing_targets + f.missing_rollbacks + f.mutable
        ]

    def view(self) -> PlannedImages:
        targets = Counter(
            str(r.reference.pinned(r.digest)) for f in self.preflights.values() for r in f.targets.values()
        )
        return PlannedImages(
            preflight=self.mode,  # type: ignore[arg-type]
            checked=self.checked,
            unchecked=self.unchecked,
            registry_requests=self.registry_requests,
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
    changes: Mapping[str, str],
    targets: Sequence[Candidate],
    *,
    settings: Settings,
    registry: RegistryFactory,
    allow_no_rollback_image: bool,
) -> ImageCheck:
    """The pre-flight over the customers a plan puts in its waves, for every component the deploy sets (`changes`:
    component -> version; a release train has several), each distinct image resolved once for the whole request.
    Raises the registry's errors (RegistryUnavailable 503, RegistryUnauthorized 502, MalformedManifest 502):
    nothing is written then."""
    mode = settings.image_preflight
    if mode == "off" or not targets:
        return ImageCheck(mode, allow_no_rollback_image, unchecked=len(targets) if mode == "off" else 0)
    tag_keys = {**default_image_tag_keys(), **settings.image_tag_keys}
    wanted: dict[str, list[CustomerImages]] = {}
    problems: list[ImageProblem] = []
    unknown: set[str] = set()  # customers with a component whose repository is not known (auto)
    for component, version in changes.items():
        where = sibling_key(tag_keys[component], "repository")
        for target in targets:
            repository = target.image_repositories.get(component)
            if repository is None:
                if mode == "required":
                    problems.append(ImageProblem(target.customer_id, "target", "(unknown)",
                                                 f"its release names no image repository at {where}; a sync reads it",
                                                 component))  # fmt: skip
                else:
                    unknown.add(target.customer_id)
                continue
            try:
                wanted.setdefault(component, []).append(customer_images(
                    target.customer_id, repository, version, target.versions.get(component), component,
                    current_digest=target.image_digests.get(component)))  # fmt: skip
            except InvalidValue as exc:  # the release's repository value names no usable image
                problems.append(ImageProblem(target.customer_id, "target", repository, exc.reason, component))
    if not wanted:
        return ImageCheck(mode, allow_no_rollback_image, unchecked=len(unknown), problems=problems)
    client = registry()
    cache, rule = ResolutionCache(client), MutableTags(settings.mutable_tag_pattern)
    preflights = {c: run_preflight(w, client, cache=cache, mutable_tags=rule) for c, w in wanted.items()}
    repositories = {c: {w.customer_id: w.target.name for w in found} for c, found in wanted.items()}
    checked = sum(all(t.customer_id in repositories.get(c, {}) for c in changes) for t in targets)
    return ImageCheck(mode, allow_no_rollback_image, preflights, len(unknown), problems, repositories,
                      cache.resolved, checked)  # fmt: skip
