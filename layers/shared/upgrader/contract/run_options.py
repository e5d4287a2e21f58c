"""The options of a run that a deploy sets and a resume may change: the failure budget and the health check."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from upgrader.contract.base import (
    DNS_LABEL_PATTERN,
    MAX_TARGETED_CUSTOMERS,
    PORT_PATTERN,
    WHOLE,
    HttpPath,
    StrictModel,
)


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
