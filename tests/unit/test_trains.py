"""Release trains (`upgrader.contract.trains`, `DeployRequest.components`): the request's checks, and the
compatibility rules checked on the set (`violations_of_changes`), where a train may move api and dashboard together
that either alone would break."""

from __future__ import annotations

import itertools
import json

import pytest
from pydantic import ValidationError
from upgrader.contract.models import DeployRequest
from upgrader.contract.trains import DuplicateKey, refuse_duplicate_keys
from upgrader.rollout.compatibility import Rule, violations, violations_of_changes
from upgrader.rollout.rollbacks import restores

# api 2 and dashboard 2 need each other: neither may go alone.
API_NEEDS_DASHBOARD = Rule(1, "api", ">=2.0", "requires", "dashboard", ">=2.0")
DASHBOARD_NEEDS_API = Rule(2, "dashboard", ">=2.0", "requires", "api", ">=2.0")
API_FROM_1_4 = Rule(3, "api", "==2.*", "upgrade_from", None, ">=1.4")
RULES = [API_NEEDS_DASHBOARD, DASHBOARD_NEEDS_API]
FLEET = {"cust_a": {"api": "v1.5.0", "dashboard": "v1.9.0"}, "cust_b": {"api": "v1.6.0", "dashboard": "v1.9.1"}}


def _broken(changes: dict[str, str]) -> set[int]:
    return {
        v.rule.id for customer, runs in FLEET.items() for v in violations_of_changes(RULES, customer, runs, changes)
    }


def test_either_component_alone_is_refused_and_both_together_are_allowed():
    assert _broken({"api": "v2.0.0"}) == {1}
    assert _broken({"dashboard": "v2.0.0"}) == {2}
    assert _broken({"api": "v2.0.0", "dashboard": "v2.0.0"}) == set()


def test_a_train_still_breaks_a_rule_on_a_component_it_does_not_carry_far_enough():
    found = violations_of_changes(RULES, "cust_a", FLEET["cust_a"], {"api": "v2.0.0", "dashboard": "v1.9.5"})
    assert [(v.rule.id, v.detail) for v in found] == [(1, "api v2.0.0 with dashboard v1.9.5")]


def test_upgrade_from_is_checked_on_what_the_customer_runs_before_the_train():
    old = {"api": "v1.2.0", "dashboard": "v1.9.0"}
    found = violations_of_changes([API_FROM_1_4], "cust_old", old, {"api": "v2.1.0", "dashboard": "v2.0.0"})
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
    train = violations_of_changes(rules, "c", current, {component: version})
    assert [(v.rule.id, v.detail) for v in train] == [(v.rule.id, v.detail) for v in single]


def test_a_train_request_names_its_first_component_in_the_registrys_order():
    request = DeployRequest.model_validate({"components": {"dashboard": "v2.1.0", "api": "v2.0.0"}, "strategy": "all"})
    assert (request.component, request.version, request.train) == ("api", "v2.0.0", True)
    assert list(request.changes.items()) == [("api", "v2.0.0"), ("dashboard", "v2.1.0")]
    assert request.in_words() == "api v2.0.0 + dashboard v2.1.0"
    single = DeployRequest.model_validate({"component": "exporter", "version": "v1.1.0", "strategy": "all"})
    assert (single.changes, single.train, single.components) == ({"exporter": "v1.1.0"}, False, None)


@pytest.mark.parametrize(
    ("components", "loc"),
    [({"apii": "v2"}, ("components", "apii", "[key]")), ({"api": "v2 0"}, ("components", "api")),
     ({"api": 2}, ("components", "api")), (["api"], ("components",))],
)  # fmt: skip
def test_a_bad_train_request_names_the_field(components, loc):
    with pytest.raises(ValidationError) as refused:
        DeployRequest.model_validate({"components": components, "strategy": "all"})
    assert loc in [e["loc"] for e in refused.value.errors()]


def test_a_train_naming_a_component_twice_is_refused_naming_it():
    text = '{"components": {"api": "v2.0.0", "dashboard": "v2.0.0", "api": "v2.1.0"}}'
    assert json.loads(text)["components"]["api"] == "v2.1.0"  # what a plain parse would silently do
    with pytest.raises(DuplicateKey) as refused:
        json.loads(text, object_pairs_hook=refuse_duplicate_keys)
    assert refused.value.field == "api"
    assert refused.value.http_status == 422


def test_a_trains_rollback_row_pins_a_components_rollback_digest_only_where_it_restores_its_version():
    upgraded = {"components": {
        "api": {"from": "v1.1.0", "to": "v2.0.0", "before": "v1.1.0", "after": "v2.0.0"},
        "dashboard": {"from": "v1.9.0", "to": "v2.0.0", "before": "v1.9.0", "after": "v2.0.0",
                      "targetDigest": "sha256:new", "rollbackDigest": "sha256:old"},
        "exporter": {"from": "v1.0.0", "to": "v1.1.0", "before": "v1.0.1", "after": "v1.1.0",
                     "rollbackDigest": "sha256:of-v1.0.0"},  # the release held another version than planned
    }}  # fmt: skip
    assert restores(upgraded) == {
        "api": {"from": "v2.0.0", "to": "v1.1.0"},
        "dashboard": {"from": "v2.0.0", "to": "v1.9.0", "targetDigest": "sha256:old"},
        "exporter": {"from": "v1.1.0", "to": "v1.0.1"},
    }
