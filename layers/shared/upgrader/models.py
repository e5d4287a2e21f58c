"""Request and response models of the HTTP API. Field names follow the specification's JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

COMPONENTS: tuple[str, ...] = ("api", "dashboard", "exporter", "mosquitto")
Component = Literal["api", "dashboard", "exporter", "mosquitto"]
Strategy = Literal["all", "canary", "batch"]

# OCI tag grammar: what `helm --set-string <key>=<version>` may safely receive (no , = [ spaces).
VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
# Customer ids become Kubernetes label values and object-name parts: ASCII only, no / or dots.
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
UPGRADE_ID_PATTERN = r"^[1-9][0-9]{0,9}$"
HTTP_PATH_PATTERN = r"^/[A-Za-z0-9._~/-]{0,254}$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
PORT_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?|[1-9][0-9]{0,4})$"
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$"
# A Helm chart version (SemVer 2, as Helm requires; build metadata allowed).
CHART_VERSION_PATTERN = r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]{1,64})?(\+[0-9A-Za-z.-]{1,64})?$"

Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
CustomerId = Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE_PATTERN)]

DEFAULT_CANARY_PERCENT = 10
DEFAULT_BATCH_SIZE = 10
MAX_TARGETED_CUSTOMERS = 10_000


class _Strict(BaseModel):
    # Unknown fields are refused (a misspelt "canarypercent" must not be silently ignored) and
    # numbers must be JSON numbers ("ten" and "10" are refused alike).
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class FailureThreshold(_Strict):
    """How many failed customers a wave tolerates before the upgrade halts (issue: safety)."""

    percent: float | None = Field(default=None, ge=0, le=100)
    count: int | None = Field(default=None, ge=0, le=MAX_TARGETED_CUSTOMERS)

    @model_validator(mode="after")
    def _one_of(self) -> FailureThreshold:
        if (self.percent is None) == (self.count is None):
            raise ValueError("failureThreshold takes exactly one of 'percent' or 'count'")
        return self


class HealthCheck(_Strict):
    """After helm: wait for the component's workloads to finish rolling out, optionally probe HTTP."""

    enabled: bool = Field(default=True, description="check the rollout after helm (default on)")
    timeoutSeconds: int = Field(  # noqa: N815
        default=300, ge=10, le=3600, description="how long the rollout may take before the customer fails"
    )
    httpPath: Annotated[str, StringConstraints(pattern=HTTP_PATH_PATTERN)] | None = Field(  # noqa: N815
        default=None, description="optional HTTP path probed through the Kubernetes service proxy, e.g. /healthz"
    )
    service: Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN)] | None = Field(
        default=None, description="service to probe (default: <release>-<component>)"
    )
    port: Annotated[str, StringConstraints(pattern=PORT_PATTERN)] = Field(
        default="http", description="service port name or number"
    )

    @model_validator(mode="after")
    def _no_parent_segments(self) -> HealthCheck:
        if self.httpPath is not None and ".." in self.httpPath.split("/"):
            raise ValueError("httpPath must not contain '..' segments")
        return self


class DeployRequest(_Strict):
    component: Component = Field(description="api | dashboard | exporter | mosquitto")
    version: Version = Field(description="image tag to roll out, e.g. v1.2.0 (OCI tag grammar)")
    strategy: Strategy = Field(description="all | canary | batch")
    canaryPercent: int | None = Field(  # noqa: N815 - the specification's JSON name
        default=None, ge=1, le=100, description="canary: share of customers in the first wave (default 10)"
    )
    batchSize: int | None = Field(  # noqa: N815
        default=None, ge=1, le=MAX_TARGETED_CUSTOMERS, description="batch: customers per wave (default 10)"
    )
    maxConcurrency: int | None = Field(  # noqa: N815
        default=None, ge=1, le=1000, description="Helm upgrades running at once within a wave"
    )
    customerIds: list[CustomerId] | None = Field(  # noqa: N815
        default=None,
        min_length=1,
        max_length=MAX_TARGETED_CUSTOMERS,
        description="only these active customers (default: every active customer)",
    )
    labels: dict[LabelKey, LabelValue] | None = Field(
        default=None, max_length=20, description="only customers carrying all these labels"
    )
    bakeSeconds: int = Field(  # noqa: N815
        default=0, ge=0, le=86_400, description="wait between two waves, after a wave succeeds"
    )
    failureThreshold: FailureThreshold | None = Field(  # noqa: N815
        default=None, description="failed customers tolerated per wave before halting (canary wave: 0)"
    )
    autoRollback: bool = Field(  # noqa: N815
        default=False, description="roll a failed customer back to its previous revision"
    )
    approvalTimeoutSeconds: int | None = Field(  # noqa: N815
        default=None, ge=60, le=31_536_000, description="canary: how long to wait for /continue"
    )
    healthCheck: HealthCheck = Field(  # noqa: N815
        default_factory=HealthCheck, description="post-upgrade checks (default: rollout within 300 s)"
    )
    chartVersion: Annotated[str, StringConstraints(pattern=CHART_VERSION_PATTERN)] | None = Field(  # noqa: N815
        default=None,
        description="the Helm chart version every customer gets (helm --version); default: each release keeps "
        "the chart version it runs, so only the component's image changes",
    )

    @model_validator(mode="after")
    def _unique_customers(self) -> DeployRequest:
        if self.customerIds is not None and len(set(self.customerIds)) != len(self.customerIds):
            raise ValueError("customerIds contains duplicates")
        return self


class DeployResponse(BaseModel):
    upgradeId: str  # noqa: N815
    jobId: str  # noqa: N815
    strategy: Strategy
    message: str
    total: int
    waves: list[int] = Field(description="number of customers in each wave, in order")
    status: str


class Attempt(BaseModel):
    jobId: str  # noqa: N815
    attempt: int
    status: str = Field(description="running, or how the execution ended (its final status, or reconciled)")
    stopReason: str | None  # noqa: N815
    endReason: str | None = Field(description="why it was ended by the reconciler")  # noqa: N815
    requestedBy: str | None  # noqa: N815
    startedAt: str | None  # noqa: N815
    endedAt: str | None  # noqa: N815


class StatusResponse(BaseModel):
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


class LogEntry(BaseModel):
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


class LogsResponse(BaseModel):
    upgradeId: str  # noqa: N815
    count: int = Field(description="entries in this page")
    total: int = Field(description="entries matching the filter")
    limit: int
    offset: int
    nextOffset: int | None  # noqa: N815
    logs: list[LogEntry]


class AbortRequest(_Strict):
    rollback: bool = Field(default=False, description="also roll back the customers already upgraded")
    reason: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="why (recorded with who asked)"
    )


class AbortResponse(BaseModel):
    message: str
    upgradeId: str  # noqa: N815
    status: str
    haltReason: str  # noqa: N815
    rollback: bool
    stoppedRuns: list[str] = Field(description="executions told to start no further customer")  # noqa: N815


class RollbackUpgradeRequest(_Strict):
    maxConcurrency: int | None = Field(  # noqa: N815
        default=None, ge=1, le=1000, description="helm rollbacks running at once (default: the upgrade's)"
    )


class ResumeRequest(_Strict):
    """Go on with a halted, aborted or failed upgrade; every field is optional and overrides the upgrade's."""

    maxConcurrency: int | None = Field(default=None, ge=1, le=1000)  # noqa: N815
    failureThreshold: FailureThreshold | None = None  # noqa: N815
    bakeSeconds: int | None = Field(default=None, ge=0, le=86_400)  # noqa: N815
    autoRollback: bool | None = None  # noqa: N815
    approvalTimeoutSeconds: int | None = Field(default=None, ge=60, le=31_536_000)  # noqa: N815
    healthCheck: HealthCheck | None = None  # noqa: N815
    retryFailed: bool = Field(  # noqa: N815
        default=False, description="also retry customers that failed without their release being changed"
    )


class ResumeResponse(BaseModel):
    message: str
    upgradeId: str  # noqa: N815
    jobId: str = Field(description="the new execution")  # noqa: N815
    attempt: int
    customers: int = Field(description="customers resumed")
    status: str


class LeftOutCustomer(BaseModel):
    customerId: str  # noqa: N815
    reason: str


class RollbackUpgradeResponse(BaseModel):
    message: str
    upgradeId: str  # noqa: N815
    jobId: str  # noqa: N815
    customers: int
    waves: list[int]
    leftOut: list[LeftOutCustomer] = Field(  # noqa: N815
        description="customers the upgrade changed that are not rolled back, with the reason (e.g. upgraded "
        "again since)"
    )


class ContinueResponse(BaseModel):
    message: str
    upgradeId: str  # noqa: N815
    jobId: str  # noqa: N815


class RollbackResponse(BaseModel):
    message: str
    customerId: str  # noqa: N815
    namespace: str
    upgradeId: str  # noqa: N815
    rollbackId: int = Field(description="id of the log row that records this rollback")  # noqa: N815
    jobId: str  # noqa: N815
    toVersion: str | None  # noqa: N815
    status: str


class UpgradeSummary(BaseModel):
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


class UpgradeListResponse(BaseModel):
    count: int
    upgrades: list[UpgradeSummary]
    nextBefore: str | None = Field(description="pass as ?before= for the next (older) page")  # noqa: N815


class QueueStatsResponse(BaseModel):
    queue: str
    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    awaitingContinue: int  # noqa: N815
    source: str


class QueueJobResponse(BaseModel):
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


class ErrorResponse(BaseModel):
    message: str
    errors: list[dict[str, Any]] | None = None


def iso(ts: datetime | None) -> str | None:
    """Timestamps as the specification shows them: 2025-10-22T17:00:00.000Z (UTC)."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
