"""A deploy's `analysis`: the checks measured after each gated wave, what a pass does, and how many customers
still on the old version are measured as the control group (docs/analysis.md).

```json
{"checks": [AnalysisCheck, ...], "onPass": "continue", "controlSample": 20}
```

Kept in the upgrade's parameters (`parameters.analysis`, camelCase as on the wire) and read back by the
state machine's analysis states with `AnalysisSpec.model_validate`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from upgrader.analysis.checks import AnalysisCheck
from upgrader.infra.wire import StrictModel

MAX_CHECKS = 10
MAX_CONTROL_SAMPLE = 200


class AnalysisSpec(StrictModel):
    """The checks of a deploy; `onPass`: continue (a pass starts the next wave by itself) or await (a pass
    still waits for /continue); `controlSample`: customers of the old version measured as the control group."""

    checks: Annotated[list[AnalysisCheck], Field(min_length=1, max_length=MAX_CHECKS)]
    on_pass: Literal["continue", "await"] = Field("continue")
    control_sample: int = Field(20, ge=0, le=MAX_CONTROL_SAMPLE)

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, checks: list[AnalysisCheck]) -> list[AnalysisCheck]:
        names = [check.name for check in checks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"check names are unique within a deploy: {', '.join(repeated)} repeated")
        return checks

    @property
    def continues_on_pass(self) -> bool:
        """A pass starts the next wave by itself (else it still waits for /continue)."""
        return self.on_pass == "continue"  # noqa: S105 (not a password)

    @property
    def rounds(self) -> int:
        """Rounds of one gate: the most any check asks for (a check with fewer is measured in its first rounds)."""
        return max(check.count for check in self.checks)

    @property
    def interval_seconds(self) -> int:
        """The pause between two rounds: the shortest interval a check asks for."""
        return min(check.interval_seconds for check in self.checks)

    def checks_of_round(self, round_index: int) -> list[AnalysisCheck]:
        return [check for check in self.checks if round_index < check.count]

    def stored(self) -> dict[str, Any]:
        """The form kept in the upgrade's parameters (and read back by `model_validate`)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
