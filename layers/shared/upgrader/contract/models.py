"""Request and response models of the HTTP API. Field names follow the specification's JSON."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from upgrader.contract.registered import COMPONENTS_IN_WORDS, STRATEGIES_IN_WORDS
from upgrader.contract.registered import Component as Component  # re-exported: the API's models name them
from upgrader.contract.registered import Strategy as Strategy
from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.infra.timestamps import iso as iso  # re-exported: the API modules format timestamps with it
from upgrader.infra.vocabulary import UpgradeStatus as UpgradeStatus

StepGate = Literal["manual", "bake"]
Progression = Literal["linear", "exponential"]
MAX_STEPS = 20

INT4_MAX = 2**31 - 1  # PostgreSQL INT / SERIAL: every id and count the database stores


def decimal_pattern(maximum: int) -> str:
    """A regular expression for the decimal numbers 1..maximum, without sign or leading zeros.

    Ids travel as strings (the specification shows "123"); bounding them in the pattern itself keeps
    an out-of-range id a 422 at the edge instead of an error from PostgreSQL, and the OpenAPI
    document states the exact range."""
    digits = str(maximum)
    shorter = {1: [], 2: ["[1-9]"]}.get(len(digits), [f"[1-9][0-9]{{0,{len(digits) - 2}}}"])
    alternatives = list(shorter)
    for index, digit in enumerate(digits):  # as long as `maximum`, with a smaller digit at `index`
        low, high = (1 if index == 0 else 0), int(digit) - 1
        if high >= low:
            rest = len(digits) - index - 1
            alternatives.append(
                digits[:index]
                + (str(low) if low == high else f"[{low}-{high}]")
                + ("[0-9]" * rest if rest < 2 else f"[0-9]{{{rest}}}")
            )
    alternatives.append(digits)
    return "^(?:" + "|".join(alternatives) + ")$"


# An RFC 3339 time with its offset: 2026-12-01T00:00:00Z, 2026-12-01T02:00:00+01:00.
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
# OCI tag grammar: what `helm --set-string <key>=<version>` may safely receive (no , = [ spaces).
VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
# Customer ids become Kubernetes label values and object-name parts: ASCII only, no / or dots.
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
UPGRADE_ID_PATTERN = decimal_pattern(INT4_MAX)
# A label selector of equality terms: key=value[,key=value...], at most 10 terms.
_LABEL_TERM = LABEL_KEY_PATTERN[1:-1] + "=" + LABEL_VALUE_PATTERN[1:-1]
LABEL_SELECTOR_PATTERN = rf"^{_LABEL_TERM}(,{_LABEL_TERM}){{0,9}}$"
# An absolute URL path whose segments are never "..": "." and ".." would let a probe leave the
# component's service (the Kubernetes service proxy resolves them). Length: HTTP_PATH_MAX_LENGTH.
_SEGMENT = r"(?:\.|[A-Za-z0-9_~-][A-Za-z0-9._~-]*|\.[A-Za-z0-9_~-][A-Za-z0-9._~-]*|\.\.[A-Za-z0-9._~-]+)?"
HTTP_PATH_PATTERN = rf"^/(?:{_SEGMENT}/)*{_SEGMENT}$"
HTTP_PATH_MAX_LENGTH = 255
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# A service port's name (starts with a letter, at most 15 characters) or number (1..65535).
PORT_PATTERN = r"^(?:[a-z](?:[a-z0-9-]{0,13}[a-z0-9])?|" + decimal_pattern(65535)[4:-2] + ")$"
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$"
# A Helm chart version (SemVer 2, as Helm requires; build metadata allowed).
CHART_VERSION_PATTERN = r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]{1,64})?(\+[0-9A-Za-z.-]{1,64})?$"

Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
CustomerId = Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE_PATTERN)]
HttpPath = Annotated[str, StringConstraints(pattern=HTTP_PATH_PATTERN, max_length=HTTP_PATH_MAX_LENGTH)]


def _whole_number(value: Any) -> Any:
    """JSON has one number type: 10.0 is the integer 10 (JSON Schema agrees). 10.5, "10" and true stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Integer fields of request bodies: `Annotated[int, Field(ge=.., le=..), WHOLE]`. The bounds come
# before the validator so that pydantic writes them as JSON Schema minimum/maximum, even in a union.
WHOLE = BeforeValidator(_whole_number)


def _digits_only(value: Any) -> Any:
    """A query string integer is written in decimal digits: '+1', ' 1', '1\n' and '1_0' are refused."""
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,12}", value):
        raise ValueError("must be a whole number written in decimal digits")
    return value


# Integer query parameters: `Annotated[int, Field(ge=.., le=..), DIGITS, Query()]` (bounds before
# the validator, so that the document states them as minimum/maximum).
DIGITS = BeforeValidator(_digits_only)

MAX_TARGETED_CUSTOMERS = 10_000


class Model(BaseModel):
    """The base of the API's models: each builds its validator and serializer when it is first used, not
    when its module is imported (a function's cold start builds only the models that function uses)."""

    model_config = ConfigDict(defer_build=True)


class StrictModel(Model):
    # The base of every request (and its parts): unknown fields are refused (a misspelt "canarypercent"
    # must not be silently ignored) and numbers must be JSON numbers ("ten" and "10" are refused alike).
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


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
    timeoutSeconds: Annotated[int, Field(ge=10, le=3600), WHOLE] = Field(  # noqa: N815
        default=300, description="how long the rollout may take before the customer fails"
    )
    httpPath: HttpPath | None = Field(  # noqa: N815
        default=None, description="optional HTTP path probed through the Kubernetes service proxy, e.g. /healthz"
    )
    service: Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN)] | None = Field(
        default=None, description="service to probe (default: <release>-<component>)"
    )
    port: Annotated[str, StringConstraints(pattern=PORT_PATTERN)] = Field(
        default="http", description="service port name or number"
    )


def label_map_schema(schema: dict[str, Any]) -> None:
    """A label map as client generators read it: the value schema as `additionalProperties`, the key pattern
    as `propertyNames`.

    Pydantic writes `dict[LabelKey, ...]` as `patternProperties`; with `additionalProperties: false` beside
    it, generators (openapi-python-client) make a model without fields and send `{}` whatever the caller
    gave. Keys that do not match the pattern are refused either way, so the document says so."""
    patterns = schema.pop("patternProperties", None)
    if patterns:
        ((key_pattern, value_schema),) = patterns.items()
        schema["propertyNames"] = {"pattern": key_pattern}
        schema["additionalProperties"] = value_schema


class DeployRequest(StrictModel):
    component: Component = Field(description=COMPONENTS_IN_WORDS)
    version: Version = Field(description="image tag to roll out, e.g. v1.2.0 (OCI tag grammar)")
    strategy: Strategy = Field(description=STRATEGIES_IN_WORDS)
    canaryPercent: Annotated[int, Field(ge=1, le=100), WHOLE] | None = Field(  # noqa: N815 - the specification's JSON name
        default=None, description="canary: share of customers in the first wave (default 10)"
    )
    batchSize: Annotated[int, Field(ge=1, le=MAX_TARGETED_CUSTOMERS), WHOLE] | None = Field(  # noqa: N815
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
    stepGate: StepGate | None = Field(  # noqa: N815
        default=None,
        description="progressive: what follows each step but the last: manual (wait for /continue, as the canary "
        "gate) or bake (wait bakeSeconds, then go on); default manual. The failure budget is checked at "
        "every step",
    )
    maxConcurrency: Annotated[int, Field(ge=1, le=1000), WHOLE] | None = Field(  # noqa: N815
        default=None, description="Helm upgrades running at once within a wave"
    )
    customerIds: (  # noqa: N815
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
    bakeSeconds: Annotated[int, Field(ge=0, le=86_400), WHOLE] = Field(  # noqa: N815
        default=0, description="wait between two waves, after a wave succeeds"
    )
    failureThreshold: FailureThreshold | None = Field(  # noqa: N815
        default=None, description="failed customers tolerated per wave before halting (canary wave: 0)"
    )
    autoRollback: bool = Field(  # noqa: N815
        default=False, description="roll a failed customer back to its previous revision"
    )
    approvalTimeoutSeconds: Annotated[int, Field(ge=60, le=31_536_000), WHOLE] | None = Field(  # noqa: N815
        default=None, description="canary: how long to wait for /continue"
    )
    healthCheck: HealthCheck = Field(  # noqa: N815
        default_factory=HealthCheck, description="post-upgrade checks (default: rollout within 300 s)"
    )
    chartVersion: Annotated[str, StringConstraints(pattern=CHART_VERSION_PATTERN, max_length=128)] | None = Field(  # noqa: N815
        default=None,
        description="the Helm chart version every customer gets (helm --version); default: each release keeps "
        "the chart version it runs, so only the component's image changes",
    )
    includePinned: bool = Field(  # noqa: N815
        default=False,
        description="also upgrade customers whose component is pinned to another version (default: they are "
        "left out, recorded as skipped with the pin's reason)",
    )
    respectWindows: bool | None = Field(  # noqa: N815
        default=None,
        description="start each customer only inside its maintenance window, when the expected duration fits "
        "before it closes (default: true when any targeted customer has a window)",
    )
    windowDeadline: Annotated[str, StringConstraints(pattern=TIMESTAMP_PATTERN, max_length=40)] | None = Field(  # noqa: N815
        default=None,
        description="with windows respected: a customer whose window does not open (with room for the expected "
        "duration) by then is skipped with the reason; RFC 3339, in the future, at most 300 days ahead "
        "(default: 14 days after the deploy)",
    )
    expectedDurationMinutes: Annotated[int, Field(ge=1, le=1440), WHOLE] | None = Field(  # noqa: N815
        default=None,
        description="with windows respected: how long one customer's upgrade is expected to take (helm and its "
        "checks); a customer starts only when this fits before its window closes (default 15)",
    )
    blueGreen: bool = Field(  # noqa: N815
        default=False,
        description="blue-green per customer (docs/blue-green.md): the new version goes onto the component's idle "
        "slot, which must become healthy (rollout, and healthCheck.httpPath through the slot's preview Service) "
        "before the Service is switched to it; a rollback switches back at once. Every targeted release must "
        "follow the blue-green chart contract; a release that does is only ever upgraded this way",
    )
    finalizeOldSlot: bool = Field(  # noqa: N815
        default=False,
        description="blue-green: once switched, remove the previous slot (its Deployment; its tag emptied): frees "
        "its pods, and a rollback is then no longer an instant switch back (default: the old slot stays until "
        "the next upgrade, which deploys onto it)",
    )
    skipIncompatible: bool = Field(  # noqa: N815
        default=False,
        description="leave out (recorded as skipped, the rule as the reason) the customers the new version would "
        "break a compatibility rule for; default: the deploy is refused (422) listing them",
    )

    @field_validator("customerIds")
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

    @field_validator("windowDeadline")
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
            named = [f for f in other.own_fields if getattr(self, f) is not None]
            if named and self.strategy != other.name:
                raise ValueError(f"{', '.join(named)} only go with strategy {other.name}")
        problems = STRATEGIES.get(self.strategy).request_problems(self)
        if problems:
            raise ValueError(problems[0])
        if self.finalizeOldSlot and not self.blueGreen:
            raise ValueError("finalizeOldSlot only goes with blueGreen")
        return self


class DeployResponse(Model):
    upgradeId: str  # noqa: N815
    jobId: str  # noqa: N815
    strategy: Strategy
    message: str
    total: int = Field(description="customers in the upgrade: in a wave, or skipped (left out: pinned, already at it)")
    waves: list[int] = Field(description="number of customers in each wave, in order")
    status: str
    skipped: int = Field(default=0, description="customers left out and recorded as skipped (see leftOut)")
    leftOut: dict[str, int] = Field(  # noqa: N815
        default_factory=dict,
        description="customers not upgraded, by reason: already_at_version, pinned, incompatible (recorded as "
        "skipped), suspended, decommissioned, not_matching",
    )


class Attempt(Model):
    jobId: str  # noqa: N815
    attempt: int
    status: str = Field(description="running, or how the execution ended (its final status, or reconciled)")
    stopReason: str | None  # noqa: N815
    endReason: str | None = Field(description="why it was ended by the reconciler")  # noqa: N815
    requestedBy: str | None  # noqa: N815
    startedAt: str | None  # noqa: N815
    endedAt: str | None  # noqa: N815


class WindowWait(Model):
    customerId: str  # noqa: N815
    nextOpening: str = Field(description="when its window opens with room for the expected duration")  # noqa: N815


class StatusResponse(Model):
    upgradeId: str  # noqa: N815
    component: str
    version: str
    fromVersion: str | None  # noqa: N815
    strategy: str
    total: int
    completed: int
    failed: int
    inProgress: int  # noqa: N815
    pending: int
    skipped: int
    rolledBack: int  # noqa: N815
    status: str
    awaitingContinue: bool  # noqa: N815
    currentWave: int | None  # noqa: N815
    totalWaves: int  # noqa: N815
    haltReason: str | None  # noqa: N815
    jobId: str | None  # noqa: N815
    requestedBy: str | None  # noqa: N815
    parameters: dict[str, Any]
    createdAt: str  # noqa: N815
    startedAt: str | None  # noqa: N815
    completedAt: str | None  # noqa: N815
    chartVersion: str | None = Field(  # noqa: N815
        description="the chart version pinned for every customer; null: each release keeps its own"
    )
    waitingForLease: int = Field(  # noqa: N815
        description="customers waiting their turn while another operation holds their release"
    )
    gate: str | None = Field(description="approval (canary, waiting for /continue) or bake (timed), when waiting")
    gateUntil: str | None = Field(description="when the bake ends")  # noqa: N815
    attempts: list[Attempt] = Field(description="the upgrade's executions: the first, then one per resume")
    continuedBy: str | None = Field(  # noqa: N815
        default=None, description="who released the canary gate (POST /continue), once someone did"
    )
    continuedAt: str | None = Field(default=None, description="when the canary gate was released")  # noqa: N815
    leftOut: dict[str, int] = Field(  # noqa: N815
        default_factory=dict,
        description="customers the deploy left out and recorded as skipped, by reason (already_at_version, pinned, "
        "incompatible, outside_window)",
    )
    blueGreen: bool = Field(  # noqa: N815
        default=False, description="the upgrade goes onto each customer's idle slot, then switches (blue-green)"
    )
    waitingForWindow: list[WindowWait] = Field(  # noqa: N815
        default_factory=list,
        description="customers waiting for their maintenance window (not started, holding no concurrency slot: a "
        "later slice of their wave starts them at nextOpening), soonest first, at most 100",
    )


class LogEntry(Model):
    id: int
    customer_id: str
    component: str
    from_version: str | None
    to_version: str
    status: str
    started_at: str | None
    completed_at: str | None
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
    jobName: str  # noqa: N815
    stage: str = Field(description="the helm step: upgrade, rollback, restore, recover, slot, switch, finalize")
    phase: str = Field(description="how the Job ended: succeeded or failed")
    recordedAt: str  # noqa: N815
    output: str = Field(description="the Job's pod log, redacted (secrets replaced by [redacted]), its tail bounded")


class HelmOutputResponse(Model):
    upgradeId: str  # noqa: N815
    logId: str  # noqa: N815
    customerId: str  # noqa: N815
    retentionDays: int = Field(description="how long full outputs are kept (older ones are deleted)")  # noqa: N815
    outputs: list[HelmOutput] = Field(description="one per helm Job of this log row, oldest first")


class LogsResponse(Model):
    upgradeId: str  # noqa: N815
    count: int = Field(description="entries in this page")
    total: int = Field(description="entries matching the filter")
    limit: int
    offset: int
    nextOffset: int | None  # noqa: N815
    logs: list[LogEntry]


# Free text stored in PostgreSQL: no NUL (PostgreSQL text cannot hold it) and no other control
# character but tab and newlines (they would garble logs and terminals).
FREE_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


class AbortRequest(StrictModel):
    rollback: bool = Field(default=False, description="also roll back the customers already upgraded")
    reason: Annotated[str, StringConstraints(max_length=500, pattern=FREE_TEXT_PATTERN)] | None = Field(
        default=None, description="why (recorded with who asked); no control characters"
    )


class AbortResponse(Model):
    message: str
    upgradeId: str  # noqa: N815
    status: str
    haltReason: str  # noqa: N815
    rollback: bool
    stoppedRuns: list[str] = Field(description="executions told to start no further customer")  # noqa: N815


_FORCE = (
    "roll back even where the version restored would break a compatibility rule (default: refused, 422, "
    "naming each customer and rule)"
)


class RollbackUpgradeRequest(StrictModel):
    maxConcurrency: Annotated[int, Field(ge=1, le=1000), WHOLE] | None = Field(  # noqa: N815
        default=None, description="helm rollbacks running at once (default: the upgrade's)"
    )
    force: bool = Field(default=False, description=_FORCE)


class RollbackCustomerRequest(StrictModel):
    force: bool = Field(default=False, description=_FORCE)


class ResumeRequest(StrictModel):
    """Go on with a halted, aborted or failed upgrade; every field is optional and overrides the upgrade's."""

    maxConcurrency: Annotated[int, Field(ge=1, le=1000), WHOLE] | None = Field(  # noqa: N815
        default=None, description="Helm upgrades running at once within a wave"
    )
    failureThreshold: FailureThreshold | None = Field(  # noqa: N815
        default=None, description="failed customers tolerated per wave before halting (the resumed run's budget)"
    )
    bakeSeconds: Annotated[int, Field(ge=0, le=86_400), WHOLE] | None = Field(  # noqa: N815
        default=None, description="wait between two waves"
    )
    autoRollback: bool | None = Field(default=None, description="roll a failed customer back")  # noqa: N815
    approvalTimeoutSeconds: Annotated[int, Field(ge=60, le=31_536_000), WHOLE] | None = Field(  # noqa: N815
        default=None, description="canary: how long to wait for /continue"
    )
    healthCheck: HealthCheck | None = Field(default=None, description="post-upgrade checks")  # noqa: N815
    retryFailed: bool = Field(  # noqa: N815
        default=False, description="also retry customers that failed without their release being changed"
    )


class ResumeResponse(Model):
    message: str
    upgradeId: str  # noqa: N815
    jobId: str = Field(description="the new execution")  # noqa: N815
    attempt: int
    customers: int = Field(description="customers resumed")
    status: str


class LeftOutCustomer(Model):
    customerId: str  # noqa: N815
    reason: str


class RollbackUpgradeResponse(Model):
    message: str
    upgradeId: str  # noqa: N815
    jobId: str  # noqa: N815
    customers: int
    waves: list[int]
    leftOut: list[LeftOutCustomer] = Field(  # noqa: N815
        description="customers the upgrade changed that are not rolled back, with the reason (e.g. upgraded "
        "again since)"
    )


class ContinueResponse(Model):
    message: str
    upgradeId: str  # noqa: N815
    jobId: str  # noqa: N815


class RollbackResponse(Model):
    message: str
    customerId: str  # noqa: N815
    namespace: str
    upgradeId: str  # noqa: N815
    rollbackId: int = Field(description="id of the log row that records this rollback")  # noqa: N815
    jobId: str  # noqa: N815
    toVersion: str | None  # noqa: N815
    status: str


class UpgradeSummary(Model):
    upgradeId: str  # noqa: N815
    component: str
    version: str
    strategy: str
    status: str
    total: int
    completed: int
    failed: int
    createdAt: str  # noqa: N815
    startedAt: str | None  # noqa: N815
    completedAt: str | None  # noqa: N815
    requestedBy: str | None  # noqa: N815


class UpgradeListResponse(Model):
    count: int
    upgrades: list[UpgradeSummary]
    nextBefore: str | None = Field(description="pass as ?before= for the next (older) page")  # noqa: N815


class QueueStatsResponse(Model):
    queue: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    awaitingContinue: int  # noqa: N815
    source: str


class QueueJobResponse(Model):
    id: str
    name: str
    state: str
    data: dict[str, Any] | None
    returnvalue: Any | None
    failedReason: str | None  # noqa: N815
    timestamp: int | None
    processedOn: int | None  # noqa: N815
    finishedOn: int | None  # noqa: N815
    executionArn: str  # noqa: N815
    mapRuns: list[dict[str, Any]]  # noqa: N815


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
