"""Compatibility rules compare versions as versions (packaging), never as strings."""

from __future__ import annotations

import pytest
from upgrader.rollout.compatibility import Rule, violations, within

DASHBOARD_NEEDS_API = Rule(1, "dashboard", ">=2.0", "requires", "api", ">=1.2")
API2_FROM_14 = Rule(2, "api", "==2.*", "upgrade_from", None, ">=1.4")


@pytest.mark.parametrize(
    ("version", "spec", "expected"),
    [
        ("v1.10.0", ">=1.9", True),  # as strings "v1.10.0" < "v1.9"
        ("1.10", ">=1.9", True),
        ("v2.0.0-rc.1", ">=2.0.0rc1", True),
        ("v1.2.0", "<1.2", False),
        ("v2.3.1", "==2.*", True),
        ("v3.0.0", "==2.*", False),
        ("latest", ">=1.0", None),
        (None, ">=1.0", None),
    ],
)
def test_versions_compare_as_versions(version, spec, expected):
    assert within(version, spec) is expected


def test_a_requirement_of_another_component_blocks_the_upgrade_that_needs_it():
    found = violations([DASHBOARD_NEEDS_API], "c1", {"api": "v1.1.0", "dashboard": "v1.9.0"}, "dashboard", "v2.0.0")
    assert [(v.rule.id, v.detail) for v in found] == [(1, "dashboard v2.0.0 with api v1.1.0")]
    # api new enough (1.10 > 1.2 as versions, not as strings)
    assert not violations([DASHBOARD_NEEDS_API], "c1", {"api": "v1.10.0"}, "dashboard", "v2.0.0")
    # a dashboard below 2.0 is not concerned
    assert not violations([DASHBOARD_NEEDS_API], "c1", {"api": "v1.1.0"}, "dashboard", "v1.9.5")


def test_moving_the_required_component_below_the_requirement_breaks_the_rule():
    """The rule also holds when the other side changes: rolling api back under a dashboard 2.x."""
    found = violations([DASHBOARD_NEEDS_API], "c1", {"api": "v1.2.0", "dashboard": "v2.1.0"}, "api", "v1.1.0")
    assert [v.rule.id for v in found] == [1]
    assert not violations([DASHBOARD_NEEDS_API], "c1", {"api": "v1.2.0", "dashboard": "v1.9.0"}, "api", "v1.1.0")


def test_upgrade_from_checks_the_version_the_customer_runs_now():
    assert [v.rule.id for v in violations([API2_FROM_14], "c1", {"api": "v1.3.9"}, "api", "v2.0.0")] == [2]
    assert not violations([API2_FROM_14], "c1", {"api": "v1.4.0"}, "api", "v2.0.0")
    assert not violations([API2_FROM_14], "c1", {"api": "v1.3.0"}, "api", "v1.5.0")  # not a 2.x target
    # unknown current version: it cannot be shown to comply
    assert [v.detail for v in violations([API2_FROM_14], "c1", {}, "api", "v2.0.0")] == [
        "api would go from unknown to v2.0.0"
    ]


def test_a_rule_describes_itself_for_refusals():
    assert DASHBOARD_NEEDS_API.wording() == "rule 1: dashboard >=2.0 requires api >=1.2"
    assert API2_FROM_14.wording() == "rule 2: api ==2.* upgrades only from api >=1.4"
