"""A version's evidence per ring, read from `customer_upgrade_logs` + `system_upgrades`
(`upgrader.promotion.evidence_repository`), the forced promotions recorded with their upgrade, and the
audited promotion rules (`rule_repository`). Real PostgreSQL with every migration applied."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from upgrader import factory
from upgrader.infra.errors import InvalidValue
from upgrader.promotion.evidence_repository import EvidenceRepository, record_override
from upgrader.promotion.rings import RingOrder
from upgrader.promotion.rule_repository import PromotionRuleRepository
from upgrader.promotion.rules import Force, PromotionRule, decide_promotion, default_rule

FINISHED = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture
def evidence(env: dict[str, str]) -> EvidenceRepository:
    return EvidenceRepository(factory.database())


@pytest.fixture
def upgrade(sql: Any, make_customers: Any):  # type: ignore[no-untyped-def]
    """An upgrade of api to `version` with one row per (customer, ring, status[, left_out])."""
    make_customers(6)

    def make(version: str, rows: list[tuple[str, str, str] | tuple[str, str, str, str]], *,
             status: str = "completed", halt: str | None = None, completed_at: datetime | None = FINISHED,
             component: str = "api") -> int:  # fmt: skip
        (u,) = sql(
            "INSERT INTO system_upgrades (component, to_version, strategy, status, halt_reason, completed_at,"
            " total_customers) VALUES (%s, %s, 'all', %s, %s, %s, %s) RETURNING id",
            component, version, status, halt, completed_at, len(rows),
        )  # fmt: skip
        for customer, ring, row_status, *left_out in rows:
            sql(
                "INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version, to_version,"
                " status, ring, left_out, completed_at) VALUES (%s, %s, %s, 'v1.1.0', %s, %s, %s, %s, %s)",
                u["id"], customer, component, version, row_status, ring, left_out[0] if left_out else None,
                completed_at,
            )  # fmt: skip
        return int(u["id"])

    return make


def test_a_version_that_never_ran_has_no_evidence(evidence, upgrade):
    upgrade("v1.9.0", [("cust_0001", "staging", "completed")])
    assert evidence.evidence("api", "v2.0.0") == {}
    assert evidence.evidence("dashboard", "v1.9.0") == {}


def test_evidence_counts_each_ring_on_the_ring_its_rows_were_written_with(evidence, upgrade):
    uid = upgrade("v2.0.0", [("cust_0001", "staging", "completed"), ("cust_0002", "staging", "failed"),
                             ("cust_0003", "staging", "skipped", "pinned"), ("cust_0004", "early", "completed")])  # fmt: skip
    found = evidence.evidence("api", "v2.0.0")
    assert sorted(found) == ["early", "staging"]
    staging = found["staging"]
    assert (staging.targeted, staging.succeeded) == (2, 1)  # the pinned customer was never targeted
    assert [u.upgrade_id for u in staging.upgrades] == [uid]
    assert staging.last_finished_at == FINISHED
    assert (found["early"].targeted, found["early"].succeeded) == (1, 1)


def test_a_customer_that_moved_ring_after_its_upgrade_leaves_the_evidence_unchanged(evidence, upgrade, sql):
    upgrade("v2.0.0", [("cust_0001", "staging", "completed"), ("cust_0002", "staging", "completed")])
    sql("UPDATE customers SET ring = 'staging' WHERE id IN ('cust_0001', 'cust_0002')")
    before = evidence.evidence("api", "v2.0.0")
    sql("UPDATE customers SET ring = 'production' WHERE id = 'cust_0002'")
    after = evidence.evidence("api", "v2.0.0")
    assert after == before
    assert (after["staging"].targeted, after["staging"].succeeded) == (2, 2)
    assert "production" not in after


def test_rows_written_before_rings_are_evidence_on_no_ring(evidence, upgrade):
    upgrade("v2.0.0", [("cust_0001", None, "completed")])  # type: ignore[list-item]
    assert evidence.evidence("api", "v2.0.0") == {}


def test_a_rolled_back_customer_did_not_succeed(evidence, upgrade, sql):
    uid = upgrade("v2.0.0", [("cust_0001", "staging", "completed"), ("cust_0002", "staging", "completed"),
                             ("cust_0003", "staging", "rolled_back")])  # fmt: skip
    (row,) = sql("SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s AND customer_id = 'cust_0002'", uid)
    sql("INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, to_version, status, operation,"
        " rollback_of) VALUES (%s, 'cust_0002', 'api', 'v1.1.0', 'completed', 'rollback', %s)", uid, row["id"])  # fmt: skip
    staging = evidence.evidence("api", "v2.0.0")["staging"]
    assert (staging.targeted, staging.succeeded) == (3, 1)


def test_halts_and_running_upgrades_are_in_the_evidence(evidence, upgrade):
    halted = upgrade("v2.0.0", [("cust_0001", "staging", "failed")], status="halted", halt="wave 1 of 1: 1 of 1 failed")
    running = upgrade("v2.0.0", [("cust_0002", "staging", "in_progress")], status="in_progress", completed_at=None)
    staging = evidence.evidence("api", "v2.0.0")["staging"]
    assert [(u.upgrade_id, u.halt_reason) for u in staging.halts] == [(halted, "wave 1 of 1: 1 of 1 failed")]
    assert [u.upgrade_id for u in staging.running] == [running]
    assert staging.running[0].finished_at is None  # not its last update: it has not finished
    assert staging.last_finished_at is None


def test_the_last_finish_is_the_latest_upgrade_of_the_ring(evidence, upgrade):
    upgrade("v2.0.0", [("cust_0001", "staging", "completed")], completed_at=FINISHED - timedelta(days=1))
    upgrade("v2.0.0", [("cust_0002", "staging", "completed")], completed_at=FINISHED)
    assert evidence.evidence("api", "v2.0.0")["staging"].last_finished_at == FINISHED


def test_the_evidence_decides_a_promotion_end_to_end(evidence, upgrade):
    """Refused on production before it ran on early; allowed on early once staging's bake is over."""
    order, rule = RingOrder(), PromotionRule("api", Decimal(50), 600)
    upgrade("v2.0.0", [("cust_0001", "staging", "completed"), ("cust_0002", "staging", "failed")])
    found = evidence.evidence("api", "v2.0.0")
    assert not decide_promotion(
        "api", "v2.0.0", "internal", order, rule, found, FINISHED + timedelta(seconds=599)
    ).allowed
    assert decide_promotion("api", "v2.0.0", "internal", order, rule, found, FINISHED + timedelta(seconds=600)).allowed
    refused = decide_promotion("api", "v2.0.0", "production", order, rule, found, FINISHED + timedelta(days=9))
    assert [m.reason for m in refused.missing] == ["never_ran"]


def test_a_forced_promotion_is_recorded_with_its_upgrade_and_what_was_missing(evidence, upgrade, env):
    uid = upgrade("v2.0.0", [("cust_0004", "production", "pending")], status="pending", completed_at=None)
    forced = decide_promotion("api", "v2.0.0", "production", RingOrder(), default_rule("api"), {}, FINISHED,
                              force=Force("incident 42", "arn:aws:iam::1:user/ops"))  # fmt: skip
    with factory.database().transaction() as cur:
        record_override(cur, uid, forced)
        record_override(cur, uid, decide_promotion("api", "v2.0.0", "staging", RingOrder(), default_rule("api"),
                                                   {}, FINISHED))  # not forced: nothing recorded  # fmt: skip
    (override,) = evidence.overrides("api", "v2.0.0")
    assert (override["upgrade_id"], override["ring"], override["reason"], override["forced_by"]) == (
        uid, "production", "incident 42", "arn:aws:iam::1:user/ops")  # fmt: skip
    assert [m["reason"] for m in override["missing"]] == ["never_ran"]


# --------------------------------------------------------------------------------------- the rules
@pytest.fixture
def rules(env: dict[str, str]) -> PromotionRuleRepository:
    return PromotionRuleRepository(factory.database())


def test_a_component_without_a_rule_has_the_default(rules):
    assert rules.rule("api") == default_rule("api")


def test_setting_a_rule_stores_it_and_audits_before_and_after(rules):
    rules.set(PromotionRule("api", Decimal("95.5"), 3600), "alice")
    stored = rules.set(PromotionRule("api", Decimal(99), 7200, no_halt=False), "bob")
    assert stored.rule == PromotionRule("api", Decimal(99), 7200, no_halt=False)
    assert rules.rule("api") == stored.rule and stored.updated_by == "bob"
    assert rules.delete("api", "carol") is True
    assert rules.delete("api", "carol") is False
    assert rules.rule("api") == default_rule("api")
    history = [(c.kind, c.before, c.after, c.actor) for c in rules.history("api")]
    assert history == [
        ("set", None, {"minSuccessPercent": 95.5, "minBakeSeconds": 3600, "noHalt": True}, "alice"),
        ("set", {"minSuccessPercent": 95.5, "minBakeSeconds": 3600, "noHalt": True},
         {"minSuccessPercent": 99.0, "minBakeSeconds": 7200, "noHalt": False}, "bob"),
        ("deleted", {"minSuccessPercent": 99.0, "minBakeSeconds": 7200, "noHalt": False}, None, "carol"),
    ]  # fmt: skip


def test_the_table_refuses_what_the_rule_refuses(sql, env):
    import psycopg

    for percent, bake in ((101, 0), (-1, 0), (50, -1)):
        with pytest.raises(psycopg.errors.CheckViolation):
            sql("INSERT INTO promotion_rules (component, min_success_percent, min_bake_seconds) VALUES ('api', %s, %s)",
                percent, bake)  # fmt: skip
    with pytest.raises(InvalidValue):
        PromotionRule("api", Decimal(101), 0)


def test_the_migration_adds_the_ring_columns(sql, env):
    columns = {(r["table_name"], r["column_name"]): r["is_nullable"] for r in sql(
        "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
        " WHERE column_name = 'ring' AND table_name IN ('customers', 'customer_upgrade_logs')")}  # fmt: skip
    assert columns == {("customers", "ring"): "YES", ("customer_upgrade_logs", "ring"): "YES"}
