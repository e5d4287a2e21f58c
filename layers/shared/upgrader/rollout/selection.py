"""Who an upgrade changes, who it leaves out and why, and in which waves: one plan for deploy and dry run.

`plan_upgrade` is the only place that decides. `POST /api/upgrades/plan` answers its result; a deploy
records exactly that result (the waves' customers as pending rows, the customers left out that the
upgrade counts as skipped rows), so the plan equals what the deploy runs by construction.

Every customer of the inventory is either in a wave or left out with one reason, checked in this order:
decommissioned, not_matching (the request's customerIds / labels / rings), suspended, pinned (a pin of the
component in force, to another version, unless `includePinned`), already_at_version, incompatible (the
change would break a compatibility rule, `upgrader.rollout.compatibility`). The last three are part of the
upgrade (skipped rows with the reason, counted in `total` and `skipped`); the others are not. A customer
that breaks a rule is only left out when the request says `skipIncompatible`; otherwise the plan lists
it in `incompatible` and a deploy is refused (422).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from upgrader.contract.models import DeployRequest, iso
from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.contract.strategies import WaveOptions
from upgrader.infra.errors import InactiveCustomers, InvalidValue, LimitExceeded, UnknownCustomers
from upgrader.rollout.compatibility import Rule, Violation, violations_of_changes
from upgrader.rollout.planner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CANARY_PERCENT,
    plan_limit_problems,
    plan_waves,
)
from upgrader.rollout.windows import DEFAULT_DEADLINE, DEFAULT_EXPECTED_SECONDS, MAX_DEADLINE, decide

# Left out, but part of the upgrade: recorded as skipped with the reason.
SKIPPED_REASONS = ("pinned", "already_at_version", "incompatible", "outside_window")


@dataclass(frozen=True)
class PinInForce:
    version: str
    reason: str
    expires_at: datetime
    pinned_by: str | None


@dataclass(frozen=True)
class Candidate:
    """A customer of the inventory, as a deploy of one component sees it (the record its SELECT maps to)."""

    customer_id: str
    namespace: str
    release_name: str
    customer_status: str  # active, suspended, decommissioned
    labels: dict[str, str]
    current_version: str | None
    chart_version: str | None = None
    versions: dict[str, str] = field(default_factory=dict)  # what it runs, per component
    maintenance_window: dict[str, Any] | None = None
    # a pin of the deployed component that has not expired (`pin`)
    pin_version: str | None = None
    pin_reason: str | None = None
    pin_expires_at: datetime | None = None
    pinned_by: str | None = None
    ring: str | None = None  # its ring (upgrader.promotion.rings: none stored is the order's default)
    # every pin in force: component -> {version, reason, expiresAt, pinnedBy} (a train checks each of its components)
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    # each component's image repository its release names (discovery, customer_image_repositories)
    image_repositories: dict[str, str] = field(default_factory=dict)
    # each component's digest its release pins the image to, while it still runs the version discovery read it with
    image_digests: dict[str, str] = field(default_factory=dict)

    @property
    def pin(self) -> PinInForce | None:
        if self.pin_version is None or self.pin_expires_at is None:
            return None
        return PinInForce(self.pin_version, str(self.pin_reason), self.pin_expires_at, self.pinned_by)

    def pin_of(self, component: str) -> PinInForce | None:
        """Its pin of `component` in force (the deployed component's from its own columns)."""
        found = self.pins.get(component)
        if found is None:
            return None
        expires = datetime.fromisoformat(str(found["expiresAt"]))
        return PinInForce(str(found["version"]), str(found.get("reason")), expires, found.get("pinnedBy"))


@dataclass(frozen=True)
class WindowPolicy:
    expected: timedelta
    deadline: datetime


@dataclass(frozen=True)
class Exclusion:
    candidate: Candidate
    reason: str
    detail: str

    @property
    def skipped(self) -> bool:
        """Recorded in the upgrade as a skipped row (pinned, already at the version)."""
        return self.reason in SKIPPED_REASONS


@dataclass
class Plan:
    request: DeployRequest
    waves: list[list[Candidate]]
    left_out: list[Exclusion]
    canary_percent: int
    batch_size: int
    approval_timeout_seconds: int
    counts: dict[str, int] = field(default_factory=dict)
    incompatible: list[Violation] = field(default_factory=list)  # breaking a rule, not skipped: refused
    steps: list[int] = field(default_factory=list)  # progressive: cumulative percentages
    step_gate: str | None = None  # progressive: manual or bake
    windows: WindowPolicy | None = None  # maintenance windows respected (None: not)
    waits: dict[str, datetime] = field(default_factory=dict)  # customer -> when its window opens, if not now

    @property
    def wave_options(self) -> WaveOptions:
        return WaveOptions(self.canary_percent, self.batch_size, tuple(self.steps))

    @property
    def targets(self) -> list[Candidate]:
        return [c for wave in self.waves for c in wave]

    @property
    def skipped(self) -> list[Exclusion]:
        return [e for e in self.left_out if e.skipped]

    @property
    def total(self) -> int:
        """Customers the upgrade records: in a wave, or skipped."""
        return len(self.targets) + len(self.skipped)


def plan_upgrade(
    request: DeployRequest,
    candidates: Sequence[Candidate],
    *,
    approval_timeout_seconds: int,
    rules: Sequence[Rule] = (),
    rings: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Plan:
    """The waves and everyone left out, for this request over these candidates (in wave order:
    canary-labelled customers first, then by id); `rings`: only customers of these rings (checked against
    the order by the caller). Raises what a deploy would refuse before recording anything: unknown or
    inactive customerIds, a plan that does not fit one execution."""
    if request.customer_ids is not None:
        by_id = {c.customer_id: c for c in candidates}
        unknown = [c for c in request.customer_ids if c not in by_id]
        if unknown:
            raise UnknownCustomers(f"unknown customer id(s): {', '.join(unknown[:20])}")
        inactive = [c for c in request.customer_ids if by_id[c].customer_status != "active"]
        if inactive:
            raise InactiveCustomers(f"customer(s) not active: {', '.join(inactive[:20])}")
    wanted = set(request.customer_ids) if request.customer_ids is not None else None
    labels = request.labels or {}
    targets: list[Candidate] = []
    left_out: list[Exclusion] = []
    incompatible: list[Violation] = []
    for candidate in candidates:
        exclusion = _left_out(request, candidate, wanted, labels, rings)
        # a train's rules are checked on its whole set (upgrader.promotion.trains): together, each component's
        # requirement may be met by another of the train
        broken = [] if exclusion is not None else violations_of_changes(
            rules, candidate.customer_id, candidate.versions, request.changes
        )  # fmt: skip
        if broken and request.skip_incompatible:
            detail = "; ".join(f"{v.detail} breaks {v.rule.wording()}" for v in broken)
            exclusion = Exclusion(candidate, "incompatible", detail)
        elif broken:
            incompatible.extend(broken)
            continue
        if exclusion is None:
            targets.append(candidate)
        else:
            left_out.append(exclusion)
    canary_percent = request.canary_percent if request.canary_percent is not None else DEFAULT_CANARY_PERCENT
    batch_size = request.batch_size if request.batch_size is not None else DEFAULT_BATCH_SIZE
    now = now or datetime.now(UTC)
    windows = window_policy(request, targets, now)
    waits: dict[str, datetime] = {}
    if windows is not None:
        for candidate in list(targets):
            decision = decide(candidate.maintenance_window, now, expected=windows.expected, deadline=windows.deadline)
            if decision.action == "skip":
                targets.remove(candidate)
                left_out.append(Exclusion(candidate, "outside_window", str(decision.reason)))
            elif decision.at is not None:
                waits[candidate.customer_id] = decision.at
    strategy = STRATEGIES.get(request.strategy)
    steps, step_gate = strategy.steps(request), strategy.step_gate(request)
    waves = plan_waves(targets, request.strategy, canary_percent=canary_percent, batch_size=batch_size, steps=steps)
    approval = request.approval_timeout_seconds or approval_timeout_seconds
    problems = plan_limit_problems(len(waves), request.strategy, request.bake_seconds, approval, step_gate=step_gate)
    if problems:
        raise LimitExceeded("the upgrade does not fit one execution: " + "; ".join(problems))
    counts = dict(Counter(e.reason for e in left_out))
    return Plan(request, waves, left_out, canary_percent, batch_size, approval, counts, incompatible, steps, step_gate,
                windows, waits)  # fmt: skip


def window_policy(request: DeployRequest, targets: Sequence[Candidate], now: datetime) -> WindowPolicy | None:
    """Whether windows are respected (the request says, else: when any target has a window) and how."""
    respect = request.respect_windows
    if respect is None:
        respect = any(t.maintenance_window for t in targets)
    if not respect:
        if request.window_deadline is not None or request.expected_duration_minutes is not None:
            raise InvalidValue("respectWindows", "windowDeadline and expectedDurationMinutes need windows respected")
        return None
    deadline = now + DEFAULT_DEADLINE
    if request.window_deadline is not None:
        deadline = datetime.fromisoformat(request.window_deadline.replace("Z", "+00:00")).astimezone(UTC)
        if not now < deadline <= now + MAX_DEADLINE:
            raise InvalidValue("windowDeadline", f"must be in the future, at most {MAX_DEADLINE.days} days ahead")
    minutes = request.expected_duration_minutes
    expected = timedelta(minutes=minutes) if minutes else timedelta(seconds=DEFAULT_EXPECTED_SECONDS)
    return WindowPolicy(expected, deadline)


def _left_out(
    request: DeployRequest,
    candidate: Candidate,
    wanted: set[str] | None,
    labels: dict[str, str],
    rings: Sequence[str] | None,
) -> Exclusion | None:
    if candidate.customer_status == "decommissioned":
        return Exclusion(candidate, "decommissioned", "decommissioned: its namespace or release is gone")
    if wanted is not None and candidate.customer_id not in wanted:
        return Exclusion(candidate, "not_matching", "not in customerIds")
    missing = {k: v for k, v in labels.items() if candidate.labels.get(k) != v}
    if missing:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
        return Exclusion(candidate, "not_matching", f"does not carry the labels {shown}")
    if rings is not None and candidate.ring not in rings:
        return Exclusion(candidate, "not_matching", f"in ring {candidate.ring}, not in rings {', '.join(rings)}")
    if candidate.customer_status != "active":
        return Exclusion(
            candidate, "suspended", f"{candidate.customer_status}: left out of every deploy until active again"
        )
    changes = request.changes
    for component, version in changes.items():
        pin = candidate.pin if component == request.component else candidate.pin_of(component)
        if pin is not None and pin.version != version and not request.include_pinned:
            by = f" by {pin.pinned_by}" if pin.pinned_by else ""
            return Exclusion(
                candidate,
                "pinned",
                f"{component} pinned to {pin.version} until {iso(pin.expires_at)}{by}: {pin.reason}",
            )
    if not request.train and candidate.current_version == request.version:
        return Exclusion(candidate, "already_at_version", f"{request.component} is already at {request.version}")
    if request.train and all(candidate.versions.get(c) == v for c, v in changes.items()):
        return Exclusion(candidate, "already_at_version", f"already at {request.in_words()}")
    return None


def describe_left_out(counts: dict[str, int], version: str) -> str:
    """`12 left out (8 already at v1.2.0, 3 pinned, 1 suspended)`; empty when nobody is."""
    words = {
        "already_at_version": f"already at {version}",
        "pinned": "pinned",
        "suspended": "suspended",
        "decommissioned": "decommissioned",
        "not_matching": "not matching",
        "incompatible": "incompatible",
        "outside_window": "outside their maintenance window",
    }
    total = sum(counts.values())
    if not total:
        return ""
    parts = ", ".join(f"{counts[k]} {words[k]}" for k in words if counts.get(k))
    return f"{total} left out ({parts})"
