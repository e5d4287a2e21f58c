"""Discovery's rules, pure: which namespaces are customers, their ids, and what a sync makes of a reading."""

from __future__ import annotations

import pytest
from upgrader.cluster.types import NamespaceRef, ReleaseSnapshot
from upgrader.fleet.discovery import KnownCustomer, Observation, assess
from upgrader.fleet.discovery_rules import DiscoveryRules, RuleError

V1 = {"api": "v1.1.0", "dashboard": "v1.9.0", "exporter": "v1.0.0", "mosquitto": "2.0.18"}


def release(revision: int = 1, **versions: str) -> ReleaseSnapshot:
    tags = {**V1, **versions}
    return ReleaseSnapshot("customer-abc123", revision, "deployed", "customer-stack", "1.5.0", dict(tags), {})


def known(**overrides: object) -> KnownCustomer:
    values: dict = dict(
        customer_id="cust_abc123", namespace="customer-abc123", release_name="customer-abc123", status="active",
        versions=dict(V1), release_revision=1, release_error=None, leased=False,
    )  # fmt: skip
    values.update(overrides)
    return KnownCustomer(**values)


def seen(snapshot: ReleaseSnapshot | None = None, error: str | None = None) -> Observation:
    return Observation("customer-abc123", "cust_abc123", snapshot, error)


# ----------------------------------------------------------------------------------------------- ids
def test_the_default_rule_is_the_specifications():
    rules = DiscoveryRules()
    assert rules.matches("customer-abc123") and not rules.matches("kube-system") and not rules.matches("customers")
    assert rules.customer_id(NamespaceRef("customer-abc123")) == "cust_abc123"
    assert rules.release_name("customer-abc123") == "customer-abc123"


def test_a_configured_pattern_and_templates():
    rules = DiscoveryRules(namespace_pattern="tenant-*-prod", id_template="{suffix}", release_template="stack-{suffix}")
    assert rules.matches("tenant-acme-prod") and not rules.matches("tenant-acme-dev")
    assert rules.customer_id(NamespaceRef("tenant-acme-prod")) == "acme"
    assert rules.release_name("tenant-acme-prod") == "stack-acme"


def test_a_namespace_label_can_carry_the_id():
    rules = DiscoveryRules(id_label="example.com/customer-id")
    assert rules.customer_id(NamespaceRef("customer-x1", {"example.com/customer-id": "acme_42"})) == "acme_42"
    assert rules.customer_id(NamespaceRef("customer-x1")) == "cust_x1"  # without the label: the template


def test_an_id_that_is_not_a_customer_id_is_refused():
    rules = DiscoveryRules(id_template="{namespace}.prod")
    with pytest.raises(RuleError, match="not a valid customer id"):
        rules.customer_id(NamespaceRef("customer-abc123"))


@pytest.mark.parametrize(
    ("pattern", "template"), [("customer-*", "cust"), ("customer-*", "{tenant}"), ("customer", "cust_{suffix}")]
)
def test_rules_that_cannot_work_fail_at_once(pattern, template):
    with pytest.raises(RuleError):
        DiscoveryRules(namespace_pattern=pattern, id_template=template)


# ------------------------------------------------------------------------------------------- assess
def test_a_new_namespace_with_a_release_is_added_with_its_versions():
    decided = assess(None, seen(release()))
    assert (decided.action, decided.versions) == ("add", V1)
    assert [kind for kind, _ in decided.events] == ["discovered"]


def test_a_release_that_disagrees_with_the_inventory_is_drift_with_both_values():
    decided = assess(known(), seen(release(revision=3, api="v9.9.9")))
    assert decided.action == "update" and decided.changed
    assert decided.drift == {"api": {"recorded": "v1.1.0", "release": "v9.9.9"}}
    assert decided.versions["api"] == "v9.9.9"  # the cluster is the truth about what runs
    assert [kind for kind, _ in decided.events] == ["drift"]


def test_a_release_in_line_with_the_inventory_changes_nothing():
    decided = assess(known(), seen(release()))
    assert (decided.action, decided.changed, decided.drift, decided.events) == ("update", False, {}, [])


@pytest.mark.parametrize("holder", [{"leased": True}, {"release_revision": 4}])
def test_a_release_our_own_operation_holds_or_changed_since_is_not_compared(holder):
    # leased: a helm Job of ours is on it; revision 4 recorded > 3 read: the reading is older than our record
    decided = assess(known(**holder), seen(release(revision=3, api="v9.9.9")))
    assert decided.busy and decided.drift == {} and decided.versions == V1 and decided.events == []


def test_a_namespace_without_its_release_decommissions_the_customer_once():
    decided = assess(known(), seen(None))
    assert decided.action == "decommission" and [k for k, _ in decided.events] == ["decommissioned"]
    again = assess(known(status="decommissioned"), seen(None))
    assert again.action == "keep" and again.events == []


def test_a_decommissioned_customer_that_comes_back_is_active_again():
    decided = assess(known(status="decommissioned"), seen(release()))
    assert decided.action == "reappear" and [k for k, _ in decided.events] == ["reappeared"]


def test_an_unreadable_release_is_reported_and_changes_nothing():
    decided = assess(known(), seen(error="Helm release Secret ... is unreadable"))
    assert decided.action == "unreadable" and decided.problem and decided.versions == {}
    assert [k for k, _ in decided.events] == ["release_unreadable"]
    # the same problem again is not a new event
    assert assess(known(release_error=decided.problem), seen(error=decided.problem)).events == []
    # a new namespace whose release cannot be read is not added, only reported
    assert assess(None, seen(error="unreadable")).action == "skip"


def test_an_id_already_taken_by_another_namespace_is_reported_not_added():
    decided = assess(None, seen(release()), id_owner="customer-old")
    assert decided.action == "skip" and "customer-old" in (decided.problem or "")
