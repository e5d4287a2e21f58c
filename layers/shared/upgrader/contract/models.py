"""Request and response models of the HTTP API. Field names follow the specification's JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel, to_snake

from upgrader.contract.analysis_models import AnalysisOption
from upgrader.contract.base import (
    CHART_VERSION_PATTERN,
    FREE_TEXT_PATTERN,
    MAX_TARGETED_CUSTOMERS,
    TIMESTAMP_PATTERN,
    WHOLE,
    CustomerId,
    LabelKey,
    LabelValue,
    Model,
    Timestamp,
    Version,
    label_map_schema,
)
from upgrader.contract.control_models import AbortRequest as AbortRequest
from upgrader.contract.control_models import AbortResponse as AbortResponse
from upgrader.contract.control_models import ContinueResponse as ContinueResponse
from upgrader.contract.control_models import LeftOutCustomer as LeftOutCustomer
from upgrader.contract.control_models import ResumeRequest as ResumeRequest
from upgrader.contract.control_models import ResumeResponse as ResumeResponse
from upgrader.contract.control_models import RollbackCustomerRequest as RollbackCustomerRequest
from upgrader.contract.control_models import RollbackResponse as RollbackResponse
from upgrader.contract.control_models import RollbackUpgradeRequest as RollbackUpgradeRequest
from upgrader.contract.control_models import RollbackUpgradeResponse as RollbackUpgradeResponse
from upgrader.contract.image_models import ImageProblemView
from upgrader.contract.progress_models import Attempt as Attempt
from upgrader.contract.progress_models import HelmOutput as HelmOutput
from upgrader.contract.progress_models import HelmOutputResponse as HelmOutputResponse
from upgrader.contract.progress_models import LogEntry as LogEntry
from upgrader.contract.progress_models import LogsResponse as LogsResponse
from upgrader.contract.progress_models import StatusResponse as StatusResponse
from upgrader.contract.progress_models import WindowWait as WindowWait
from upgrader.contract.promotion_models import PromotionView
from upgrader.contract.registered import COMPONENTS_IN_WORDS, STRATEGIES_IN_WORDS
from upgrader.contract.registered import Component as Component  # re-exported: the API's models name them
from upgrader.contract.registered import Strategy as Strategy
from upgrader.contract.run_options import FailureThreshold as FailureThreshold
from upgrader.contract.run_options import HealthCheck as HealthCheck
from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.contract.trains import TRAIN_FIELD, TrainComponents, TrainOption, train_changes, train_or_single
from upgrader.infra.timestamps import iso as iso  # re-exported: the API modules format timestamps with it
from upgrader.infra.vocabulary import UpgradeStatus as UpgradeStatus

StepGate = Literal["manual", "bake"]
Progression = Literal["linear", "exponential"]
MAX_STEPS = 20


class DeployRequest(TrainOption, AnalysisOption):
    """One component (`component` + `version`) or a release train (`components`): exactly one of the two."""

    model_config = ConfigDict(json_schema_extra=train_or_single)

    component: Component = Field(
        description=COMPONENTS_IN_WORDS + " (a train names its components in `components` instead)"
    )
    version: Version = Field(description="image tag to roll out, e.g. v1.2.0 (OCI tag grammar)")
    components: TrainComponents = TRAIN_FIELD
    strategy: Strategy = Field(description=STRATEGIES_IN_WORDS)
    canary_percent: Annotated[int, Field(ge=1, le=100), WHOLE] | None = Field(
        default=None, description="canary: share of customers in the first wave (default 10)"
    )
    batch_size: Annotated[int, Field(ge=1, le=MAX_TARGETED_CUSTOMERS), WHOLE] | None = Field(
        default=None, description="batch: customers per wave (default 10)"
    )
    steps: (
        Annotated[
            list[Annotated[int, Field(ge=1, le=100), WHOLE]],
            Field(min_length=1, max_length=MAX_STEPS, json_schema_extra={"uniqueItems": True}),
        ]
        | None
    ) = Field(
        default=None,
        description="progressive: cumulative percentages of the customers upgraded after each step, increasing, "
        "ending at 100, e.g. [1, 5, 25, 100]; each step is followed by its gate (stepGate)",
    )
    progression: Progression | None = Field(
        default=None,
        description="progressive, instead of steps: linear = 10, 20, ... 100 %; exponential = 1, 2, 4, ... 64, "
        "100 % (the default)",
    )
    step_gate: StepGate | None = Field(
        default=None,
        description="progressive: what follows each step but the last: manual (wait for /continue, as the canary "
        "gate) or bake (wait bakeSeconds, then go on); default manual. The failure budget is checked at "
        "every step",
    )
    max_concurrency: Annotated[int, Field(ge=1, le=1000), WHOLE] | None = Field(
        default=None, description="Helm upgrades running at once within a wave"
    )
    customer_ids: (
        Annotated[
            list[CustomerId],
            Field(min_length=1, max_length=MAX_TARGETED_CUSTOMERS, json_schema_extra={"uniqueItems": True}),
        ]
        | None
    ) = Field(default=None, description="only these active customers (default: every active customer), each once")
    labels: (
        Annotated[dict[LabelKey, LabelValue], Field(min_length=1, max_length=20, json_schema_extra=label_map_schema)]
        | None
    ) = Field(
        default=None,
        description="only customers carrying all these labels (at least one label: leave the field out to target "
        "every active customer; an empty map is refused, never read as everyone)",
    )
    bake_seconds: Annotated[int, Field(ge=0, le=86_400), WHOLE] = Field(
        default=0, description="wait between two waves, after a wave succeeds"
    )
    failure_threshold: FailureThreshold | None = Field(
        default=None, description="failed customers tolerated per wave before halting (canary wave: 0)"
    )
    auto_rollback: bool = Field(default=False, description="roll a failed customer back to its previous revision")
    approval_timeout_seconds: Annotated[int, Field(ge=60, le=31_536_000), WHOLE] | None = Field(
        default=None, description="canary: how long to wait for /continue"
    )
    health_check: HealthCheck = Field(
        default_factory=HealthCheck, description="post-upgrade checks (default: rollout within 300 s)"
    )
    chart_version: Annotated[str, StringConstraints(pattern=CHART_VERSION_PATTERN, max_length=128)] | None = Field(
        default=None,
        description="the Helm chart version every customer gets (helm --version); default: each release keeps "
        "the chart version it runs, so only the component's image changes",
    )
    include_pinned: bool = Field(
        default=False,
        description="also upgrade customers whose component is pinned to another version (default: they are "
        "left out, recorded as skipped with the pin's reason)",
    )
    respect_windows: bool | None = Field(
        default=None,
        description="start each customer only inside its maintenance window, when the expected duration fits "
        "before it closes (default: true when any targeted customer has a window)",
    )
    window_deadline: Annotated[str, StringConstraints(pattern=TIMESTAMP_PATTERN, max_length=40)] | None = Field(
        default=None,
        description="with windows respected: a customer whose window does not open (with room for the expected "
        "duration) by then is skipped with the reason; RFC 3339, in the future, at most 300 days ahead "
        "(default: 14 days after the deploy)",
    )
    expected_duration_minutes: Annotated[int, Field(ge=1, le=1440), WHOLE] | None = Field(
        default=None,
        description="with windows respected: how long one customer's upgrade is expected to take (helm and its "
        "checks); a customer starts only when this fits before its window closes (default 15)",
    )
    blue_green: bool = Field(
        default=False,
        description="blue-green per customer (docs/blue-green.md): the new version goes onto the component's idle "
        "slot, which must become healthy (rollout, and healthCheck.httpPath through the slot's preview Service) "
        "before the Service is switched to it; a rollback switches back at once. Every targeted release must "
        "follow the blue-green chart contract; a release that does is only ever upgraded this way",
    )
    finalize_old_slot: bool = Field(
        default=False,
        description="blue-green: once switched, remove the previous slot (its Deployment; its tag emptied): frees "
        "its pods, and a rollback is then no longer an instant switch back (default: the old slot stays until "
        "the next upgrade, which deploys onto it)",
    )
    allow_no_rollback_image: bool = Field(
        default=False,
        description="start even when some customers' current image (their rollback image) is no longer in the "
        "registry or is named by a mutable tag (recorded on the upgrade); default: refused (422 ImagesRefused)",
    )
    skip_incompatible: bool = Field(
        default=False,
        description="leave out (recorded as skipped, the rule as the reason) the customers the new version would "
        "break a compatibility rule for; default: the deploy is refused (422) listing them",
    )
    rings: (
        Annotated[list[LabelValue], Field(min_length=1, max_length=20, json_schema_extra={"uniqueItems": True})] | None
    ) = Field(
        default=None,
        description="only customers of these rings (GET /api/fleet lists the rings; default: every ring). Where "
        "the component has a promotion rule, the version must have passed the ring before each targeted one "
        "(422 NotPromoted otherwise)",
    )
    force_reason: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=FREE_TEXT_PATTERN)] | None = (
        Field(
            default=None,
            description="why the promotion rule is overridden (with force only); recorded with the upgrade and shown",
        )
    )
    force: bool = Field(
        default=False,
        validate_default=True,
        description="start even where the promotion rule refuses (needs forceReason; recorded)",
    )

    @field_validator("blue_green")
    @classmethod
    def _one_component_at_a_time(cls, value: bool, info: ValidationInfo) -> bool:
        if value and len(info.data.get("components") or {}) > 1:
            raise ValueError("blueGreen switches one component's slots; a train (components) sets several at once")
        return value

    @property
    def changes(self) -> dict[str, str]:
        """Every component this request sets -> its version (one entry unless a train), first component first."""
        return train_changes(self.component, self.version, self.components)

    @property
    def train(self) -> bool:
        return self.components is not None and len(self.components) > 1

    def in_words(self) -> str:
        """`api v2.0.0`, or a train's `api v2.0.0 + dashboard v2.0.0`."""
        return " + ".join(f"{c} {v}" for c, v in self.changes.items())

    @field_validator("customer_ids", "rings")
    @classmethod
    def _each_once(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"{to_camel(info.field_name or '')} contains duplicates")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _some_label(cls, value: Any) -> Any:
        if value == {}:
            raise ValueError(
                "an empty label filter would match every customer: give at least one label, or leave labels out "
                "to target every active customer"
            )
        return value

    @field_validator("force")
    @classmethod
    def _force_goes_with_its_reason(cls, value: bool, info: ValidationInfo) -> bool:
        reason = info.data.get("force_reason")
        if value is True and (reason is None or not reason.strip()):
            raise ValueError("force needs a forceReason (why: it is recorded and shown)")
        if value is not True and reason is not None:
            raise ValueError("forceReason is given without force: true")
        return value

    @field_validator("window_deadline")
    @classmethod
    def _a_real_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(f"not a valid time: {exc}") from exc
        return value

    @field_validator("steps")
    @classmethod
    def _cumulative(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (value != sorted(set(value)) or value[-1] != 100):
            raise ValueError("steps are cumulative percentages: strictly increasing, the last one 100")
        return value

    @model_validator(mode="after")
    def _strategy_fields(self) -> DeployRequest:
        for other in STRATEGIES:  # the fields that go with one strategy only (upgrader.contract.strategies)
            named = [f for f in other.own_fields if getattr(self, to_snake(f)) is not None]
            if named and self.strategy != other.name:
                raise ValueError(f"{', '.join(named)} only go with strategy {other.name}")
        problems = STRATEGIES.get(self.strategy).request_problems(self)
        if problems:
            raise ValueError(problems[0])
        if self.finalize_old_slot and not self.blue_green:
            raise ValueError("finalizeOldSlot only goes with blueGreen")
        return self


class DeployResponse(Model):
    upgrade_id: str
    job_id: str
    strategy: Strategy
    message: str
    total: int = Field(description="customers in the upgrade: in a wave, or skipped (left out: pinned, already at it)")
    waves: list[int] = Field(description="number of customers in each wave, in order")
    status: str
    skipped: int = Field(default=0, description="customers left out and recorded as skipped (see leftOut)")
    left_out: dict[str, int] = Field(
        default_factory=dict,
        description="customers not upgraded, by reason: already_at_version, pinned, incompatible (recorded as "
        "skipped), suspended, decommissioned, not_matching",
    )
    components: dict[str, str] | None = Field(
        default=None, description="a release train: every component it sets -> its version; null for one component"
    )


class UpgradeSummary(Model):
    upgrade_id: str
    component: str
    version: str
    strategy: str
    status: str
    total: int
    completed: int
    failed: int
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    requested_by: str | None
    components: dict[str, str] | None = Field(
        default=None, description="a release train: every component it sets -> its version; null for one component"
    )


class UpgradeListResponse(Model):
    count: int
    upgrades: list[UpgradeSummary]
    next_before: str | None = Field(description="pass as ?before= for the next (older) page")


class QueueStatsResponse(Model):
    queue: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    awaiting_continue: int
    source: str


class QueueJobResponse(Model):
    id: str
    name: str
    state: str
    data: dict[str, Any] | None
    returnvalue: Any | None
    failed_reason: str | None
    timestamp: int | None
    processed_on: int | None
    finished_on: int | None
    execution_arn: str
    map_runs: list[dict[str, Any]]


class FieldError(Model):
    field: str = Field(description="the invalid input: a path or query parameter, 'body', or a body field path")
    message: str
    type: str = Field(description="the kind of problem, e.g. missing, string_pattern_mismatch, extra_forbidden")


class ErrorResponse(Model):
    """Every error answer: a message for people, plus the error's name or the invalid fields."""

    message: str
    error: str | None = Field(default=None, description="name of the domain error, e.g. UpgradeNotFound")
    errors: list[FieldError] | None = Field(
        default=None, description="422: each invalid field; 400: `body` (not one JSON object)"
    )
    incompatible: list[dict[str, Any]] | None = Field(
        default=None,
        description="422 IncompatibleVersions: each customer and the compatibility rule the change would break "
        "(customerId, ruleId, rule, detail)",
    )
    promotion: PromotionView | None = Field(
        default=None,
        description="422 NotPromoted: the ring refused, the ring before it, what its evidence lacks and since when",
    )
    problems: list[ImageProblemView] | None = Field(
        default=None,
        description="422 ImagesRefused: every customer's image the deploy cannot start without (customerId, role "
        "target or rollback, image, reason); 503/502: the registry's fault names the registry or the credentials",
    )
