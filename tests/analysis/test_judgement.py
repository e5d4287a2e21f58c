"""The judgement: thresholds per customer and over the wave, the comparison with the control group, and
every way of lacking evidence ending inconclusive, never pass."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.judgement import CheckVerdict, judge, overall
from upgrader.analysis.measurements import Cohort, Measurement

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def a_check(judgement: dict[str, Any], **extra: Any) -> AnalysisCheck:
    return AnalysisCheck.model_validate(
        {"name": "error-rate", "provider": "prometheus", "query": "sum(x)", "judgement": judgement, **extra}
    )


def m(customer: str, cohort: Cohort, value: float | None, error: str | None = None) -> Measurement:
    return Measurement("error-rate", customer, cohort, "sum(x)", AT, value=value, error=error)


def cohort(cohort: Cohort, values: list[float], prefix: str = "") -> list[Measurement]:
    return [m(f"{prefix or cohort}{i}", cohort, v) for i, v in enumerate(values)]


THRESHOLD = {"kind": "threshold"}
LIMIT = {"failureCondition": {"op": ">", "value": 0.01}}


def test_a_threshold_per_customer_fails_naming_the_customer_over_it():
    verdict = judge(a_check(THRESHOLD, **LIMIT), [*cohort("upgraded", [0.004, 0.02, 0.005]), m("c0", "control", 0.5)])
    assert (verdict.verdict, verdict.reason) == ("fail", "failing values for upgraded1")
    assert [x.verdict for x in verdict.measurements] == ["pass", "fail", "pass", None]  # the control is not judged


def test_a_threshold_per_customer_passes_when_every_value_passes():
    assert judge(a_check(THRESHOLD, **LIMIT), cohort("upgraded", [0.004, 0.005])).verdict == "pass"


@pytest.mark.parametrize(
    "measurements",
    [
        [],  # nothing measured
        [m("u0", "upgraded", 0.004), m("u1", "upgraded", None, "timeout after 10 s")],
        [m("u0", "upgraded", 0.004), m("u1", "upgraded", None, "HTTP 503")],
        [m("u0", "upgraded", None, "no data")],
        [m("u0", "upgraded", float("nan"))],  # a NaN is no data, not a number that fails no condition
    ],
)
def test_missing_evidence_is_inconclusive_never_pass(measurements):
    assert judge(a_check(THRESHOLD, **LIMIT), measurements).verdict == "inconclusive"
    comparison = a_check({"kind": "comparison"})
    assert judge(comparison, [*measurements, *cohort("control", [0.004] * 5)]).verdict == "inconclusive"


def test_a_value_between_the_conditions_is_inconclusive():
    check = a_check(THRESHOLD, successCondition={"op": "<", "value": 0.005}, **LIMIT)
    assert judge(check, cohort("upgraded", [0.004, 0.007])).verdict == "inconclusive"


def test_a_threshold_over_the_wave_judges_the_mean():
    check = a_check({"kind": "threshold", "scope": "wave"}, **LIMIT)
    assert judge(check, cohort("upgraded", [0.004, 0.015])).verdict == "pass"  # mean 0.0095
    assert judge(check, cohort("upgraded", [0.008, 0.015])).verdict == "fail"  # mean 0.0115
    missing = [*cohort("upgraded", [0.004]), m("u9", "upgraded", None, "no data")]
    assert judge(check, missing).verdict == "inconclusive"


CONTROL = [0.0040, 0.0045, 0.0050, 0.0052, 0.0055, 0.0060, 0.0048, 0.0058, 0.0043, 0.0051]


def test_the_comparison_fails_an_upgraded_cohort_clearly_worse_than_the_control():
    verdict = judge(a_check({"kind": "comparison"}), [*cohort("upgraded", [0.028, 0.031, 0.035, 0.029, 0.033]),
                                                        *cohort("control", CONTROL)])  # fmt: skip
    assert verdict.verdict == "fail"
    assert verdict.evidence["u"] == 50 and verdict.evidence["method"] == "exact"
    assert verdict.evidence["p"] == pytest.approx(1 / 3003)  # all 5 above all 10: 1 / C(15, 5)
    assert set(verdict.evidence["control"]) == {f"control{i}" for i in range(10)}


def test_the_comparison_passes_a_cohort_like_the_control():
    upgraded = [0.0046, 0.0053, 0.0049, 0.0057, 0.0042]
    verdict = judge(a_check({"kind": "comparison"}), [*cohort("upgraded", upgraded), *cohort("control", CONTROL)])
    assert verdict.verdict == "pass", verdict.reason


def test_the_tolerated_degradation_scales_the_control_before_the_test():
    control = [1.00, 1.01, 1.02, 1.03, 1.04, 1.05]
    upgraded = [1.15, 1.16, 1.17, 1.18, 1.19, 1.20]  # about 15 % worse
    measured = [*cohort("upgraded", upgraded), *cohort("control", control)]
    assert judge(a_check({"kind": "comparison", "toleratedDegradation": 0.05}), measured).verdict == "fail"
    assert judge(a_check({"kind": "comparison", "toleratedDegradation": 0.25}), measured).verdict == "pass"


def test_lower_is_worse_turns_the_test_around():
    control, upgraded = [100.0, 101, 102, 103, 104], [80.0, 81, 82, 83, 84]  # throughput fell
    measured = [*cohort("upgraded", upgraded), *cohort("control", control)]
    assert judge(a_check({"kind": "comparison", "worseWhen": "lower"}), measured).verdict == "fail"
    assert judge(a_check({"kind": "comparison", "worseWhen": "higher"}), measured).verdict == "pass"


def test_too_few_customers_per_cohort_is_inconclusive():
    two_upgraded = [*cohort("upgraded", [0.03, 0.03]), *cohort("control", CONTROL)]
    assert judge(a_check({"kind": "comparison"}), two_upgraded).verdict == "inconclusive"
    # control customers without data leave the sample; fewer than minPerCohort left: inconclusive
    thin_control = [*cohort("upgraded", [0.03] * 5), *cohort("control", CONTROL[:4]),
                    *[m(f"dark{i}", "control", None, "no data") for i in range(6)]]  # fmt: skip
    verdict = judge(a_check({"kind": "comparison", "minPerCohort": 5}), thin_control)
    assert (verdict.verdict, verdict.evidence["missing"]["control"]) == ("inconclusive", [f"dark{i}" for i in range(6)])


def test_a_customer_counts_once_with_the_mean_of_its_rounds():
    rounds = [m("u0", "upgraded", 0.03), m("u0", "upgraded", 0.05), *cohort("upgraded", [0.03, 0.03], "v"),
              *cohort("control", CONTROL)]  # fmt: skip
    verdict = judge(a_check({"kind": "comparison"}), rounds)
    assert verdict.evidence["upgraded"]["u0"] == pytest.approx(0.04)
    assert len(verdict.evidence["upgraded"]) == 3


def test_the_gate_fails_on_any_fail_waits_on_any_inconclusive_and_passes_only_with_every_check_passing():
    def v(verdict: str) -> CheckVerdict:
        return CheckVerdict("c", verdict, "rule", "reason")  # type: ignore[arg-type]

    assert overall([v("pass"), v("inconclusive"), v("fail")]) == "fail"
    assert overall([v("pass"), v("inconclusive")]) == "inconclusive"
    assert overall([v("pass"), v("pass")]) == "pass"
    assert overall([]) == "inconclusive"


def test_an_upgraded_customer_without_data_makes_the_comparison_inconclusive_even_with_enough_others():
    """The customer whose metrics vanished may be the one the new version broke: it is not left out."""
    measured = [*cohort("upgraded", [0.0046, 0.0053, 0.0049, 0.0042]), m("dark", "upgraded", None, "HTTP 503"),
                *cohort("control", CONTROL)]  # fmt: skip
    verdict = judge(a_check({"kind": "comparison"}), measured)
    assert (verdict.verdict, verdict.evidence["missing"]["upgraded"]) == ("inconclusive", ["dark"])
