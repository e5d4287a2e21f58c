"""Rings (`upgrader.promotion.rings`): the order and its checks, a customer's ring, the discovery label."""

from __future__ import annotations

import pytest
from upgrader.cluster.types import NamespaceRef
from upgrader.fleet.discovery_rules import RuleError
from upgrader.fleet.ring_labels import RingFromLabel, RingLabelRule
from upgrader.infra.errors import InvalidValue
from upgrader.promotion.rings import DEFAULT_RING_ORDER, RingOrder, UnknownRing


def test_the_default_order_runs_from_staging_to_production():
    order = RingOrder()
    assert order.names == ("staging", "internal", "early", "production")
    assert (order.first, order.last) == ("staging", "production")
    assert [order.previous(r) for r in DEFAULT_RING_ORDER] == [None, "staging", "internal", "early"]


def test_a_customer_without_a_ring_is_in_the_last_ring():
    order = RingOrder.parse("canary,staging,prod")
    assert order.default == "prod"
    assert order.ring_of(None) == "prod"
    assert order.ring_of("staging") == "staging"
    # a ring the order no longer holds (the order changed since) reads as the last ring too
    assert order.ring_of("internal") == "prod"


def test_an_order_from_a_setting_or_a_list():
    assert RingOrder.parse(" a , b,c").names == ("a", "b", "c")
    assert RingOrder.parse(["x", "y"]).names == ("x", "y")


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ([], "ringOrder", "at least one ring"),
        ("", "ringOrder", "at least one ring"),
        (["staging", "production", "staging"], "ringOrder", "staging given more than once"),
        (["staging", "Prod Ring"], "ringOrder[1]", "not a ring name"),
        (["staging", "-prod"], "ringOrder[1]", "not a ring name"),
        (["a" * 64], "ringOrder[0]", "not a ring name"),
        ([f"r{i}" for i in range(21)], "ringOrder", "at most 20 rings"),
    ],
)
def test_a_bad_order_is_refused_naming_the_field(value, field, words):
    with pytest.raises(InvalidValue) as refused:
        RingOrder.parse(value)
    assert refused.value.field == field
    assert words in refused.value.reason


def test_a_ring_order_built_directly_is_checked_too():
    with pytest.raises(InvalidValue, match="more than once"):
        RingOrder(("a", "a"))


def test_an_unknown_ring_is_a_422_naming_the_field():
    with pytest.raises(UnknownRing) as refused:
        RingOrder().previous("qa", "rings[0]")
    assert refused.value.http_status == 422
    assert refused.value.field == "rings[0]"
    assert "staging, internal, early, production" in refused.value.reason


def test_a_deploys_rings_are_known_once_each_and_come_back_in_order():
    order = RingOrder()
    assert order.targets(["production", "staging"]) == ("staging", "production")
    with pytest.raises(UnknownRing) as unknown:
        order.targets(["staging", "qa"])
    assert unknown.value.field == "rings[1]"
    with pytest.raises(InvalidValue, match="each ring once"):
        order.targets(["early", "early"])
    with pytest.raises(InvalidValue, match="at least one ring"):
        order.targets([])


def test_the_ring_label_names_the_ring_at_discovery():
    rule = RingLabelRule()
    assert rule.ring_for(NamespaceRef("customer-a", {"ring": "early"})) == RingFromLabel("early")
    assert rule.ring_for(NamespaceRef("customer-b", {})) == RingFromLabel(None)
    odd = rule.ring_for(NamespaceRef("customer-c", {"ring": "qa"}))
    assert odd.ring is None
    assert odd.problem is not None and "customer-c has ring='qa'" in odd.problem


def test_the_ring_label_key_is_configurable_and_checked():
    rule = RingLabelRule("example.com/ring", RingOrder.parse("beta,ga"))
    assert rule.ring_for(NamespaceRef("customer-a", {"example.com/ring": "beta", "ring": "ga"})).ring == "beta"
    with pytest.raises(RuleError):
        RingLabelRule("not a key")


@pytest.mark.parametrize(("env", "named"), [({"RING_ORDER": "staging,production,staging"}, "RING_ORDER"),
                                            ({"RING_ORDER": "staging,"}, "RING_ORDER"),
                                            ({"CUSTOMER_RING_LABEL": "not a key"}, "CUSTOMER_RING_LABEL")])  # fmt: skip
def test_a_bad_ring_setting_fails_at_cold_start_naming_it(monkeypatch, env, named):
    from upgrader import factory
    from upgrader.infra.settings import SettingsError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    factory.reset()
    try:
        with pytest.raises(SettingsError, match=named):
            factory.ring_labels()  # builds the order first: either setting fails here
    finally:
        factory.reset()
