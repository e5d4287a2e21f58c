"""The verdict of one check over a wave: pass, fail or inconclusive, with the evidence.

- Threshold, per customer: each upgraded customer's values against the conditions; one failing value
  fails the check, a missing value (no data, a provider error) or one meeting neither condition makes it
  inconclusive.
- Threshold, over the wave: the mean of the upgraded customers' values, judged once (every upgraded
  customer must have its values: a customer without data could be the broken one).
- Comparison with the control group: each customer's mean value; a one-sided Mann-Whitney U test of
  "the upgraded customers are worse than the control group by more than the tolerated degradation"
  (the control's values scaled by 1 + tolerance when higher is worse, 1 - tolerance when lower is
  worse), failing when p < 1 - confidence. An upgraded customer without data, or fewer than
  `min_per_cohort` customers with data in either cohort, is inconclusive: never a pass.

Each measurement gets its own verdict (`CheckVerdict.measurements`, stored by the gate): per customer, its value
against the conditions (no value: inconclusive); over the wave, the wave's verdict for each upgraded
measurement; in a comparison, the comparison's verdict for every measurement of both cohorts. A threshold check
does not judge the control group's measurements (verdict None: they took no part).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from upgrader.analysis.checks import AnalysisCheck, ComparisonJudgement
from upgrader.analysis.mann_whitney import mann_whitney_u
from upgrader.analysis.measurements import Measurement, Verdict


@dataclass(frozen=True, slots=True)
class CheckVerdict:
    check: str
    verdict: Verdict
    rule: str  # the rule applied, in words
    reason: str  # why this verdict
    evidence: dict[str, Any] = field(default_factory=dict)  # values per cohort, U, p, ...
    measurements: tuple[Measurement, ...] = ()  # each with its own verdict


def judge(check: AnalysisCheck, measurements: list[Measurement]) -> CheckVerdict:
    """The verdict of `check` from its measurements (both cohorts, every round)."""
    mine = [m for m in measurements if m.check == check.name]
    if isinstance(check.judgement, ComparisonJudgement):
        return _compare(check, check.judgement, mine)
    if check.judgement.scope == "wave":
        return _threshold_over_wave(check, mine)
    return _threshold_per_customer(check, mine)


def overall(verdicts: list[CheckVerdict]) -> Verdict:
    """A gate's verdict: any fail fails; else any inconclusive (or no check at all) waits; else pass."""
    found = {v.verdict for v in verdicts}
    if "fail" in found:
        return "fail"
    if "inconclusive" in found or not verdicts:
        return "inconclusive"
    return "pass"


def _conditions(check: AnalysisCheck) -> str:
    parts = [f"fail when value {c.op} {c.value:g}" for c in [check.failure_condition] if c]
    parts += [f"pass when value {c.op} {c.value:g}" for c in [check.success_condition] if c]
    return "; ".join(parts)


def _per_value(check: AnalysisCheck, m: Measurement) -> Measurement:
    return m.judged(check.verdict_of(m.value) if m.has_value and m.value is not None else "inconclusive")


def _threshold_per_customer(check: AnalysisCheck, measurements: list[Measurement]) -> CheckVerdict:
    rule = f"threshold per customer: {_conditions(check)}"
    upgraded = [_per_value(check, m) for m in measurements if m.cohort == "upgraded"]
    others = tuple(m for m in measurements if m.cohort != "upgraded")
    by_customer: dict[str, list[float | None]] = defaultdict(list)
    for m in upgraded:
        by_customer[m.customer_id].append(m.value if m.has_value else None)
    evidence: dict[str, Any] = {"upgraded": dict(by_customer)}
    failed = sorted({m.customer_id for m in upgraded if m.verdict == "fail"})
    unsure = sorted({m.customer_id for m in upgraded if m.verdict == "inconclusive"})
    judged = (*upgraded, *others)
    if failed:
        return CheckVerdict(check.name, "fail", rule, f"failing values for {', '.join(failed)}", evidence, judged)
    if not upgraded:
        return CheckVerdict(
            check.name, "inconclusive", rule, "no measurement of an upgraded customer", evidence, judged
        )
    if unsure:
        reason = f"no data, an error or a value meeting neither condition for {', '.join(unsure)}"
        return CheckVerdict(check.name, "inconclusive", rule, reason, evidence, judged)
    return CheckVerdict(
        check.name, "pass", rule, f"every value of {len(by_customer)} customers passes", evidence, judged
    )


def _threshold_over_wave(check: AnalysisCheck, measurements: list[Measurement]) -> CheckVerdict:
    rule = f"threshold over the wave (mean of the upgraded customers' values): {_conditions(check)}"
    upgraded = [m for m in measurements if m.cohort == "upgraded"]
    others = tuple(m for m in measurements if m.cohort != "upgraded")  # the control takes no part: not judged
    missing = sorted({m.customer_id for m in upgraded if not m.has_value})
    values = [m.value for m in upgraded if m.has_value and m.value is not None]
    evidence: dict[str, Any] = {"upgraded": values, "missing": missing}
    if missing or not values:
        reason = (
            f"no data or an error for {', '.join(missing)}" if missing else "no measurement of an upgraded customer"
        )
        judged = (*(m.judged("inconclusive") for m in upgraded), *others)
        return CheckVerdict(check.name, "inconclusive", rule, reason, evidence, judged)
    mean = statistics.fmean(values)
    verdict = check.verdict_of(mean)
    evidence["mean"] = mean
    judged = (*(m.judged(verdict) for m in upgraded), *others)
    return CheckVerdict(check.name, verdict, rule, f"mean {mean:g} over {len(values)} values", evidence, judged)


def _compare(check: AnalysisCheck, how: ComparisonJudgement, measurements: list[Measurement]) -> CheckVerdict:
    scale = 1 + how.tolerated_degradation if how.worse_when == "higher" else 1 - how.tolerated_degradation
    alpha = 1 - how.confidence
    rule = (f"comparison with the control group: one-sided Mann-Whitney U, upgraded {how.worse_when} than control "
            f"x {scale:g}, fail when p < {alpha:g}; at least {how.min_per_cohort} customers with data per cohort")  # fmt: skip
    per_customer: dict[str, dict[str, list[float]]] = {"upgraded": defaultdict(list), "control": defaultdict(list)}
    missing: dict[str, set[str]] = {"upgraded": set(), "control": set()}
    for m in measurements:
        if m.has_value and m.value is not None:
            per_customer[m.cohort][m.customer_id].append(m.value)
        else:
            missing[m.cohort].add(m.customer_id)
    # A customer is in its cohort's sample only when every round of it answered.
    means = {cohort: {c: statistics.fmean(v) for c, v in values.items() if c not in missing[cohort]}
             for cohort, values in per_customer.items()}  # fmt: skip
    upgraded, control = list(means["upgraded"].values()), list(means["control"].values())
    evidence: dict[str, Any] = {
        "upgraded": means["upgraded"], "control": means["control"],
        "missing": {cohort: sorted(ids) for cohort, ids in missing.items()},
    }  # fmt: skip

    def verdict(value: Verdict, reason: str) -> CheckVerdict:
        return CheckVerdict(check.name, value, rule, reason, evidence, tuple(m.judged(value) for m in measurements))

    if missing["upgraded"]:
        return verdict("inconclusive", f"no data or an error for upgraded {', '.join(sorted(missing['upgraded']))}")
    if len(upgraded) < how.min_per_cohort or len(control) < how.min_per_cohort:
        return verdict("inconclusive", f"too few customers with data: {len(upgraded)} upgraded, {len(control)} "
                                       f"control (at least {how.min_per_cohort} each)")  # fmt: skip
    scaled = [v * scale for v in control]
    test = mann_whitney_u(upgraded, scaled, "greater" if how.worse_when == "higher" else "less")
    evidence.update({"u": test.u, "p": test.p_value, "method": test.method,
                     "medianUpgraded": statistics.median(upgraded), "medianControl": statistics.median(control)})  # fmt: skip
    if test.p_value < alpha:
        return verdict("fail", f"upgraded worse than tolerated: U={test.u:g}, p={test.p_value:.4g} < {alpha:g}")
    if check.failure_condition is not None and any(check.failure_condition.holds(v) for v in upgraded):
        return verdict("fail", "an upgraded customer meets the failure condition")
    return verdict("pass", f"no significant degradation: U={test.u:g}, p={test.p_value:.4g} >= {alpha:g}")
