"""The deploy's pre-flight (issue 22): before the first wave, every customer's target image (the repository its
release's values name + the new tag) and rollback image (the same repository + the tag it runs now) resolved
to a digest. A pure rule over the registry port: the caller passes the registry (the router of real adapters
in a deploy, an in-memory fake in unit tests).

Each distinct image is asked once per deploy (`ResolutionCache`): 1,000 customers on three images cost three
registry requests, not a thousand. What it answers: the digest per customer for target and rollback (the
digests every wave then installs), the customers whose target is missing (the deploy answers 422 with each
image and its customers), those whose rollback image is missing (refused unless the deploy says
`allowNoRollbackImage`, which is recorded), and the mutable tags refused. A registry that fails raises
(`RegistryUnavailable` -> 503, `RegistryUnauthorized` -> 502): the deploy never starts blind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from upgrader.images.references import ImageReference, MutableTags, image_of
from upgrader.images.registry import ImageRegistry, Missing, Resolution, Resolved
from upgrader.infra.components import tag_version
from upgrader.infra.errors import InvalidValue, UpgradeError

Role = Literal["target", "rollback"]
MAX_NAMED = 10  # customers named per image in a refusal's message (the `problems` list holds them all)


@dataclass(frozen=True, slots=True)
class CustomerImages:
    """One customer's two images; `rollback` is None when what it runs now is not known (reason given)."""

    customer_id: str
    target: ImageReference
    rollback: ImageReference | None
    no_rollback_reason: str = ""
    component: str | None = None  # whose images these are (a release train checks each of its components)


def customer_images(
    customer_id: str,
    repository: str,
    target_tag: str,
    current_tag: str | None,
    component: str | None = None,
    *,
    current_digest: str | None = None,
) -> CustomerImages:
    """The images of a customer whose release names `repository` (its `<component>.image.repository` value,
    upgrader.images.references.repository_key) and runs `current_tag` (its version, or a tag value `v1@sha256:…`),
    pinned to `current_digest` when its release names one (its digest value or its tag value's, discovery): the
    rollback image is then exact, `repository:v1@sha256:…`, whatever the tag names today.
    InvalidValue when the repository or the target tag is not a valid reference."""
    try:
        target = image_of(repository, target_tag)
    except InvalidValue as exc:  # the deploy's answer names the customer whose release names no usable image
        raise InvalidValue(exc.field, f"customer {customer_id}: {exc.reason}") from exc
    if current_tag is None:
        return CustomerImages(customer_id, target, None, "the version it runs is not known", component)
    try:
        current = f"{tag_version(current_tag)}@{current_digest}" if current_digest else current_tag
        return CustomerImages(customer_id, target, image_of(repository, current), component=component)
    except InvalidValue as exc:
        return CustomerImages(customer_id, target, None, f"its current tag is not usable: {exc.reason}", component)


@dataclass(frozen=True, slots=True)
class ImageProblem:
    customer_id: str
    role: Role
    image: str
    reason: str
    component: str | None = None  # the component whose image it is (None: a caller that did not say)

    def as_dict(self) -> dict[str, str | None]:
        return {"customerId": self.customer_id, "role": self.role, "image": self.image, "reason": self.reason,
                "component": self.component}  # fmt: skip


@dataclass(frozen=True)
class Preflight:
    """What the registry said about every customer's images."""

    targets: dict[str, Resolved] = field(default_factory=dict)
    rollbacks: dict[str, Resolved] = field(default_factory=dict)
    missing_targets: list[ImageProblem] = field(default_factory=list)
    missing_rollbacks: list[ImageProblem] = field(default_factory=list)
    mutable: list[ImageProblem] = field(default_factory=list)
    distinct_images: int = 0  # registry resolutions made: one per distinct image

    def refusal(self, *, allow_no_rollback_image: bool) -> ImagesRefused | None:
        """The error the deploy answers with, or None when it may start. Mutable target tags and missing
        targets always refuse; rollback images (missing, or named by a mutable tag) unless allowed."""
        refused = self.missing_targets + [p for p in self.mutable if p.role == "target"]
        if not allow_no_rollback_image:
            refused += self.missing_rollbacks + [p for p in self.mutable if p.role == "rollback"]
        return ImagesRefused(refused) if refused else None


class ImagesRefused(UpgradeError):
    """422: images a deploy cannot start without, each with its customers (`problems`: every one of them)."""

    http_status = 422

    def __init__(self, problems: list[ImageProblem]) -> None:
        self.problems = problems
        groups: dict[tuple[str | None, str, str, str], list[str]] = {}
        for problem in problems:
            key = (problem.component, problem.role, problem.image, problem.reason)
            groups.setdefault(key, []).append(problem.customer_id)
        parts = []
        for (component, role, image, reason), customers in groups.items():
            named = ", ".join(customers[:MAX_NAMED]) + (
                f" and {len(customers) - MAX_NAMED} more" if len(customers) > MAX_NAMED else ""
            )
            whose = f"{component} " if component else ""
            parts.append(f"{whose}{role} image {image} ({reason}) for {len(customers)} customer(s): {named}")
        advice = (
            "; deploy with allowNoRollbackImage to go ahead without them"
            if any(p.role == "rollback" for p in problems)
            else ""
        )
        super().__init__("images refused: " + "; ".join(parts) + advice)


class ResolutionCache:
    """Resolves each distinct reference once (for one deploy); concurrent callers of one image wait for the
    first's answer. Errors are not kept: the deploy fails with the first one."""

    def __init__(self, registry: ImageRegistry) -> None:
        self._registry = registry
        self._answers: dict[ImageReference, Resolution] = {}
        self._locks: dict[ImageReference, threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def resolved(self) -> int:
        return len(self._answers)

    def resolve(self, reference: ImageReference) -> Resolution:
        with self._guard:
            lock = self._locks.setdefault(reference, threading.Lock())
        with lock:
            if reference not in self._answers:
                self._answers[reference] = self._registry.resolve(reference)
            return self._answers[reference]


def run_preflight(
    customers: Iterable[CustomerImages], registry: ImageRegistry, *, mutable_tags: MutableTags | None = None,
    parallel: int = 8, cache: ResolutionCache | None = None,
) -> Preflight:  # fmt: skip
    """Resolve every customer's target and rollback image, each distinct image once (up to `parallel` at a
    time), and sort the answers into digests and problems. Raises the registry's errors."""
    rule = mutable_tags or MutableTags()
    cache = cache or ResolutionCache(registry)
    wanted: dict[tuple[str, Role], ImageReference] = {}
    components: dict[str, str | None] = {}
    result = Preflight()
    for customer in customers:
        roles: tuple[tuple[Role, ImageReference | None], ...] = (
            ("target", customer.target),
            ("rollback", customer.rollback),
        )
        for role, reference in roles:
            if reference is None:
                result.missing_rollbacks.append(
                    ImageProblem(
                        customer.customer_id, "rollback", "(none)", customer.no_rollback_reason, customer.component
                    )
                )
            elif rule.refuses(reference):
                result.mutable.append(
                    ImageProblem(
                        customer.customer_id,
                        role,
                        str(reference),
                        "a mutable tag names no fixed image",
                        customer.component,
                    )
                )
            else:
                wanted[(customer.customer_id, role)] = reference
                components[customer.customer_id] = customer.component
    answers = _resolve_all(cache, list(dict.fromkeys(wanted.values())), parallel)
    for (customer_id, role), reference in wanted.items():
        answer = answers[reference]
        if isinstance(answer, Missing):
            problems = result.missing_targets if role == "target" else result.missing_rollbacks
            problems.append(
                ImageProblem(customer_id, role, str(reference), "not in the registry", components[customer_id])
            )
        else:
            (result.targets if role == "target" else result.rollbacks)[customer_id] = answer
    return Preflight(result.targets, result.rollbacks, result.missing_targets, result.missing_rollbacks,
                     result.mutable, distinct_images=cache.resolved)  # fmt: skip


def _resolve_all(
    cache: ResolutionCache, references: list[ImageReference], parallel: int
) -> Mapping[ImageReference, Resolution]:
    if parallel <= 1 or len(references) <= 1:
        return {reference: cache.resolve(reference) for reference in references}
    with ThreadPoolExecutor(max_workers=min(parallel, len(references)), thread_name_prefix="preflight") as pool:
        return dict(zip(references, pool.map(cache.resolve, references), strict=True))
