"""Release trains (`upgrader.promotion.trains`): the request's checks, and the compatibility rules checked on
the set, where a train may move api and dashboard together that either alone would break."""

from __future__ import annotations

import itertools
import json

import pytest
from pydantic import ValidationError
from upgrader.infra.errors import InvalidValue
from upgrader.promotion.trains import (
    DuplicateKey,
    TrainRequest,
    check_train,
    refuse_duplicate_keys,
    train_components,
    train_violations,
)
from upgrader.rollout.compatibility import IncompatibleVersions, Rule, violations

# api 2 and dashboard 2 need each other: neither may go alone.
API_NEEDS_DASHBOARD = Rule(1, "api", ">=2.0", "requires", "dashboard", ">=2.0")
DASHBOARD_NEEDS_API = Rule(2, "dashboard", ">=2.0", "requires", "api", ">=2.0")
API_FROM_1_4 = Rule(3, "api", "==2.*", "upgrade_from", None, ">=1.4")
RULES = [API_NEEDS_DASHBOARD, DASHBOARD_NEEDS_API]
FLEET = {"cust_a": {"api": "v1.5.0", "dashboard": "v1.9.0"}, "cust_b": {"api": "v1.6.0", "dashboard": "v1.9.1"}}


def test_either_component_alone_is_refused_and_both_together_are_allowed():
    alone_api = check_train(RULES, FLEET, {"api": "v2.0.0"})
    alone_dashboard = check_train(RULES, FLEET, {"dashboard": "v2.0.0"})
    assert isinstance(alone_api, IncompatibleVersions) and isinstance(alone_dashboard, IncompatibleVersions)
    assert {c["ruleId"] for c in alone_api.customers} == {"1"}
    assert {c["ruleId"] for c in alone_dashboard.customers} == {"2"}
    assert "the train api v2.0.0 would break compatibility rules for 2 customer(s)" in alone_api.message
    assert check_train(RULES, FLEET, {"api": "v2.0.0", "dashboard": "v2.0.0"}) is None


def test_a_train_still_breaks_a_rule_on_a_component_it_does_not_carry_far_enough():
    found = train_violations(RULES, "cust_a", FLEET["cust_a"], {"api": "v2.0.0", "dashboard": "v1.9.5"})
    assert [(v.rule.id, v.detail) for v in found] == [(1, "api v2.0.0 with dashboard v1.9.5")]


def test_upgrade_from_is_checked_on_what_the_customer_runs_before_the_train():
    old = {"api": "v1.2.0", "dashboard": "v1.9.0"}
    found = train_violations([API_FROM_1_4], "cust_old", old, {"api": "v2.1.0", "dashboard": "v2.0.0"})
    assert [(v.rule.id, v.detail) for v in found] == [(3, "api would go from v1.2.0 to v2.1.0")]


@pytest.mark.parametrize(
    ("component", "version", "current"),
    list(itertools.product(["api", "dashboard", "exporter"], ["v1.3.0", "v2.0.0", "latest"],
                           [{"api": "v1.2.0", "dashboard": "v1.9.0"}, {"api": "v1.5.0", "dashboard": "v2.0.0"},
                            {"api": "v2.0.0"}, {}])),
)  # fmt: skip
def test_a_train_of_one_component_answers_exactly_as_a_single_deploy(component, version, current):
    rules = [*RULES, API_FROM_1_4, Rule(4, "exporter", ">=1.3", "requires", "api", ">=1.5")]
    single = violations(rules, "c", current, component, version)
    train = train_violations(rules, "c", current, {component: version})
    assert [(v.rule.id, v.detail) for v in train] == [(v.rule.id, v.detail) for v in single]


def test_a_train_request_takes_known_components_and_versions():
    request = TrainRequest.model_validate({"components": {"api": "v2.0.0", "dashboard": "v2.0.0"}})
    assert request.components == {"api": "v2.0.0", "dashboard": "v2.0.0"}


@pytest.mark.parametrize(
    ("components", "loc"),
    [({}, ("components",)), ({"apii": "v2"}, ("components", "apii", "[key]")),
     ({"api": "v2 0"}, ("components", "api")), ({"api": 2}, ("components", "api")), (["api"], ("components",))],
)  # fmt: skip
def test_a_bad_train_request_names_the_field(components, loc):
    with pytest.raises(ValidationError) as refused:
        TrainRequest.model_validate({"components": components})
    assert [e["loc"] for e in refused.value.errors()] == [loc]


def test_a_train_naming_a_component_twice_is_refused_naming_it():
    text = '{"components": {"api": "v2.0.0", "dashboard": "v2.0.0", "api": "v2.1.0"}}'
    assert json.loads(text)["components"]["api"] == "v2.1.0"  # what a plain parse would silently do
    with pytest.raises(DuplicateKey) as refused:
        json.loads(text, object_pairs_hook=refuse_duplicate_keys)
    assert refused.value.field == "api"
    assert refused.value.http_status == 422


@pytest.mark.parametrize(
    ("value", "field"),
    [({}, "components"), ("api", "components"), ({"api": "v2", "mqtt": "v1"}, "components.mqtt"),
     ({"api": "bad tag"}, "components.api"), ({"api": None}, "components.api")],
)  # fmt: skip
def test_train_components_without_pydantic_names_the_field(value, field):
    with pytest.raises(InvalidValue) as refused:
        train_components(value)
    assert refused.value.field == field


def test_train_components_keeps_the_order_given():
    assert list(train_components({"dashboard": "v2", "api": "v2"})) == ["dashboard", "api"]
