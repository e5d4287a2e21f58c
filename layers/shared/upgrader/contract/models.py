"""Request and response models of the HTTP API. Field names follow the specification's JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_snake
from pydantic.json_schema import SkipJsonSchema

from upgrader.contract.analysis_models import AnalysisOption, AnalysisStatus
from upgrader.contract.base import (
    CHART_VERSION_PATTERN,
    DNS_LABEL_PATTERN,
    FREE_TEXT_PATTERN,
    MAX_TARGETED_CUSTOMERS,
    PORT_PATTERN,
    TIMESTAMP_PATTERN,
    WHOLE,
    CustomerId,
    HttpPath,
    LabelKey,
    LabelValue,
    Model,
    StrictModel,
    Timestamp,
    Version,
    label_map_schema,
)
from upgrader.contract.registered import COMPONENTS_IN_WORDS, STRATEGIES_IN_WORDS
from upgrader.contract.registered import Component as Component  # re-exported: the API's models name them
from upgrader.contract.registered import Strategy as Strategy
from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.infra.timestamps import iso as iso  # re-exported: the API modules format timestamps with it
from upgrader.infra.vocabulary import UpgradeStatus as UpgradeStatus

StepGate = Literal["manual", "bake"]
Progression = Literal["linear", "exponential"]
MAX_STEPS = 20


def _without_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


_ONE_THRESHOLD = "failureThreshold takes exactly one of 'percent' or 'count'"


class FailureThreshold(StrictModel):
    """How many failed customers a wave tolerates before the upgrade halts: exactly one of the two."""

    # The document says what the validators enforce: one key, and its value a number (never null).
    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    percent: Annotated[float, Field(ge=0, le=100)] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_without_default
    )
    count: Annotated[int, Field(ge=0, le=MAX_TARGETED_CUSTOMERS), WHOLE] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_without_default
    )

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) != 1:
            raise ValueError(_ONE_THRESHOLD)
        return data

    @field_validator("percent", "count", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must be a number, not null")
        return value

    @model_validator(mode="after")
    def _one_value(self) -> FailureThreshold:
        if (self.percent is None) == (self.count is None):
            raise ValueError(_ONE_THRESHOLD)
        return self


class HealthCheck(StrictModel):
    """After helm: wait for the component's workloads to finish rolling out, optionally probe HTTP."""

    enabled: bool = Field(default=True, description="check the rollout after helm (default on)")
    timeout_seconds: Annotated[int, Field(ge=10, le=3600), WHOLE] = Field(
        default=300, description="how long the rollout may take before the customer fails"
    )
    http_path: HttpPath | None = Field(
        default=None, description="optional HTTP path probed through the Kubernetes service proxy, e.g. /healthz"
    )
    service: Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN)] | None = Field(
        default=None, description="service to probe (default: <release>-<component>)"
    )
    port: Annotated[str, StringConstraints(pattern=PORT_PATTERN)] = Field(
        default="http", description="service port name or number"
    )


class DeployRequest(AnalysisOption):
    component: Component = Field(description=COMPONENTS_IN_WORDS)
    version: Version = Field(description="image tag to roll out, e.g. v1.2.0 (OCI tag grammar)")
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
    skip_incompatible: bool = Field(
        default=False,
        description="leave out (recorded as skipped, the rule as the reason) the customers the new version would "
        "break a compatibility rule for; default: the deploy is refused (422) listing them",
    )

    @field_validator("customer_ids")
    @classmethod
    def _unique_customers(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("customerIds contains duplicates")
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


class Attempt(Model):
    job_id: str
    attempt: int
    status: str = Field(description="running, or how the execution ended (its final status, or reconciled)")
    stop_reason: str | None
    end_reason: str | None = Field(description="why it was ended by the reconciler")
    requested_by: str | None
    started_at: Timestamp | None
    ended_at: Timestamp | None


class WindowWait(Model):
    customer_id: str
    next_opening: str = Field(description="when its window opens with room for the expected duration")


class StatusResponse(AnalysisStatus):
    upgrade_id: str
    component: str
    version: str
    from_version: str | None
    strategy: str
    total: int
    completed: int
    failed: int
    in_progress: int
    pending: int
    skipped: int
    rolled_back: int
    status: str
    awaiting_continue: bool
    current_wave: int | None
    total_waves: int
    halt_reason: str | None
    job_id: str | None
    requested_by: str | None
    parameters: dict[str, Any]
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    chart_version: str | None = Field(
        description="the chart version pinned for every customer; null: each release keeps its own"
    )
    waiting_for_lease: int = Field(
        description="customers waiting their turn while another operation holds their release"
    )
    gate: str | None = Field(description="approval (canary, waiting for /continue) or bake (timed), when waiting")
    gate_until: Timestamp | None = Field(description="when the bake ends")
    attempts: list[Attempt] = Field(description="the upgrade's executions: the first, then one per resume")
    continued_by: str | None = Field(
        default=None, description="who released the canary gate (POST /continue), once someone did"
    )
    continued_at: Timestamp | None = Field(default=None, description="when the canary gate was released")
    left_out: dict[str, int] = Field(
        default_factory=dict,
        description="customers the deploy left out and recorded as skipped, by reason (already_at_version, pinned, "
        "incompatible, outside_window)",
    )
    blue_green: bool = Field(
        default=False, description="the upgrade goes onto each customer's idle slot, then switches (blue-green)"
    )
    waiting_for_window: list[WindowWait] = Field(
        default_factory=list,
        description="customers waiting for their maintenance window (not started, holding no concurrency slot: a "
        "later slice of their wave starts them at nextOpening), soonest first, at most 100",
    )


class LogEntry(Model):
    model_config = ConfigDict(alias_generator=None)  # wire names: the columns, as the specification shows them

    id: int
    customer_id: str
    component: str
    from_version: str | None
    to_version: str
    status: str
    started_at: Timestamp | None
    completed_at: Timestamp | None
    output: str | None
    error: str | None
    operation: str
    wave: int
    attempt: int
    namespace: str | None
    job_name: str | None
    revision_before: int | None = Field(description="the release's revision before this helm operation")
    revision_after: int | None = Field(description="the release's revision after it (read from the release)")
    version_before: str | None = Field(description="the component's version the release held before")
    version_after: str | None = Field(description="the component's version the release holds after")
    chart_version: str | None = Field(description="the chart version this operation pinned")
    rollback_of: int | None = Field(description="rollback rows: the id of the upgrade row it undoes")
    waiting_for: str | None = Field(description="why this customer waits (another operation holds its release)")
    left_out: str | None = Field(
        default=None,
        description="why the deploy left this customer out (already_at_version, pinned, incompatible); its wave "
        "is then -1",
    )


class HelmOutput(Model):
    job_name: str
    stage: str = Field(description="the helm step: upgrade, rollback, restore, recover, slot, switch, finalize")
    phase: str = Field(description="how the Job ended: succeeded or failed")
    recorded_at: Timestamp
    output: str = Field(description="the Job's pod log, redacted (secrets replaced by [redacted]), its tail bounded")


class HelmOutputResponse(Model):
    upgrade_id: str
    log_id: str
    customer_id: str
    retention_days: int = Field(description="how long full outputs are kept (older ones are deleted)")
    outputs: list[HelmOutput] = Field(description="one per helm Job of this log row, oldest first")


class LogsResponse(Model):
    upgrade_id: str
    count: int = Field(description="entries in this page")
    total: int = Field(description="entries matching the filter")
    limit: int
    offset: int
    next_offset: int | None
    logs: list[LogEntry]


class AbortRequest(StrictModel):
    rollback: bool = Field(default=False, description="also roll back the customers already upgraded")
    reason: Annotated[str, StringConstraints(max_length=500, pattern=FREE_TEXT_PATTERN)] | None = Field(
        default=None, description="why (recorded with who asked); no control characters"
    )


class AbortResponse(Model):
    message: str
    upgrade_id: str
    status: str
    halt_reason: str
    rollback: bool
    stopped_runs: list[str] = Field(description="executions told to start no further customer")


_FORCE = (
    "roll back even where the version restored would break a compatibility rule (default: refused, 422, "
    "naming each customer and rule)"
)


class RollbackUpgradeRequest(StrictModel):
    max_concurrency: Annotated[int, Field(ge=1, le=1000), WHOLE] | None = Field(
        default=None, description="helm rollbacks running at once (default: the upgrade's)"
    )
    force: bool = Field(default=False, description=_FORCE)


class RollbackCustomerRequest(StrictModel):
    force: bool = Field(default=False, description=_FORCE)


class ResumeRequest(StrictModel):
    """Go on with a halted, aborted or failed upgrade; every field is optional and overrides the upgrade's."""

    max_concurrency: Annotated[int, Field(ge=1, le=1000), WHOLE] | None = Field(
        default=None, description="Helm upgrades running at once within a wave"
    )
    failure_threshold: FailureThreshold | None = Field(
        default=None, description="failed customers tolerated per wave before halting (the resumed run's budget)"
    )
    bake_seconds: Annotated[int, Field(ge=0, le=86_400), WHOLE] | None = Field(
        default=None, description="wait between two waves"
    )
    auto_rollback: bool | None = Field(default=None, description="roll a failed customer back")
    approval_timeout_seconds: Annotated[int, Field(ge=60, le=31_536_000), WHOLE] | None = Field(
        default=None, description="canary: how long to wait for /continue"
    )
    health_check: HealthCheck | None = Field(default=None, description="post-upgrade checks")
    retry_failed: bool = Field(
        default=False, description="also retry customers that failed without their release being changed"
    )


class ResumeResponse(Model):
    message: str
    upgrade_id: str
    job_id: str = Field(description="the new execution")
    attempt: int
    customers: int = Field(description="customers resumed")
    status: str


class LeftOutCustomer(Model):
    customer_id: str
    reason: str


class RollbackUpgradeResponse(Model):
    message: str
    upgrade_id: str
    job_id: str
    customers: int
    waves: list[int]
    left_out: list[LeftOutCustomer] = Field(
        description="customers the upgrade changed that are not rolled back, with the reason (e.g. upgraded "
        "again since)"
    )


class ContinueResponse(Model):
    message: str
    upgrade_id: str
    job_id: str


class RollbackResponse(Model):
    message: str
    customer_id: str
    namespace: str
    upgrade_id: str
    rollback_id: int = Field(description="id of the log row that records this rollback")
    job_id: str
    to_version: str | None
    status: str


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
