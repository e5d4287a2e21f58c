"""Request and response models of the HTTP API's controls of a running upgrade: abort, continue, resume,
rollback (of an upgrade or of one customer)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from upgrader.contract.base import FREE_TEXT_PATTERN, WHOLE, Model, StrictModel
from upgrader.contract.run_options import FailureThreshold, HealthCheck


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
