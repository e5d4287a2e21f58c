"""A measurement: one value (or why there is none) of one check for one customer at one time.

Every measurement is kept, with the query as it ran, the customer's cohort (upgraded or control) and the
verdict the judgement gave it: the evidence behind a gate, shown by `GET /api/upgrades/{id}/analysis`
and stored in `analysis_measurements` (migration 070)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

Cohort = Literal["upgraded", "control"]
Verdict = Literal["pass", "fail", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("pass", "fail", "inconclusive")
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a provider answered. `value` None: no data, or an error (then `error` says which)."""

    check: str
    customer_id: str
    cohort: Cohort
    query: str  # as it ran, after templating
    measured_at: datetime
    value: float | None = None
    error: str | None = None  # "timeout", "HTTP 503", "not JSON", "2 series"...: never a secret
    verdict: Verdict | None = None  # set by the judgement
    retryable: bool = False  # no answer this time (timeout, unreachable, 5xx, throttled): another try may get one

    def __post_init__(self) -> None:
        if self.value is not None and not math.isfinite(self.value):
            object.__setattr__(self, "value", None)
            object.__setattr__(self, "error", self.error or "not a finite number")
        if self.error is not None and len(self.error) > MAX_ERROR_CHARS:
            object.__setattr__(self, "error", self.error[:MAX_ERROR_CHARS])

    @property
    def has_value(self) -> bool:
        return self.value is not None and self.error is None

    def judged(self, verdict: Verdict) -> Measurement:
        return replace(self, verdict=verdict)


@dataclass(frozen=True, slots=True)
class StoredMeasurement:
    """A row of `analysis_measurements`: a measurement and where it belongs (upgrade, wave, round)."""

    upgrade_id: int
    wave: int
    round: int  # 0 .. check.count - 1
    measurement: Measurement

    COLUMNS = ("upgrade_id", "wave", "round", "check_name", "customer_id", "cohort", "query", "measured_at",
               "value", "error", "verdict")  # fmt: skip

    def row(self) -> dict[str, Any]:
        """The parameters of the INSERT, by column name (psycopg `%(name)s` placeholders)."""
        m = self.measurement
        return {"upgrade_id": self.upgrade_id, "wave": self.wave, "round": self.round, "check_name": m.check,
                "customer_id": m.customer_id, "cohort": m.cohort, "query": m.query, "measured_at": m.measured_at,
                "value": m.value, "error": m.error, "verdict": m.verdict}  # fmt: skip


INSERT_MEASUREMENT = (
    "INSERT INTO analysis_measurements (upgrade_id, wave, round, check_name, customer_id, cohort, query, "
    "measured_at, value, error, verdict) VALUES (%(upgrade_id)s, %(wave)s, %(round)s, %(check_name)s, "
    "%(customer_id)s, %(cohort)s, %(query)s, %(measured_at)s, %(value)s, %(error)s, %(verdict)s) "
    "ON CONFLICT (upgrade_id, wave, round, check_name, customer_id) DO NOTHING"
)

# The judgement's verdict of each measurement, stored with the wave's verdict (upgrader.rollout.analysis_verdicts).
# Within a wave, a check's measurement of a customer is named by its time: one round's moment (rounds are at least
# `intervalSeconds` >= 5 s apart), read back from the table by the judgement.
STORE_MEASUREMENT_VERDICTS = (
    "UPDATE analysis_measurements AS m SET verdict = j.verdict"
    " FROM unnest(%(checks)s::text[], %(customers)s::text[], %(times)s::timestamptz[], %(verdicts)s::text[])"
    " AS j(check_name, customer_id, measured_at, verdict)"
    " WHERE m.upgrade_id = %(upgrade_id)s AND m.wave = %(wave)s AND m.check_name = j.check_name"
    " AND m.customer_id = j.customer_id AND m.measured_at = j.measured_at"
)


def verdict_parameters(upgrade_id: int, wave: int, judged: Sequence[Measurement]) -> dict[str, Any]:
    """The parameters of STORE_MEASUREMENT_VERDICTS: the measurements the judgement gave a verdict."""
    given = [m for m in judged if m.verdict is not None]
    return {"upgrade_id": upgrade_id, "wave": wave, "checks": [m.check for m in given],
            "customers": [m.customer_id for m in given], "times": [m.measured_at for m in given],
            "verdicts": [m.verdict for m in given]}  # fmt: skip
