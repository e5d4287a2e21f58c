"""SQL of the promotion rules (one per component) and their audit trail (`promotion_rule_events`, written in
the transaction that changes the rule). Parameterized always; each public method is one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from upgrader.infra.db import Database, Row
from upgrader.promotion.rules import PromotionRule, default_rule


@dataclass(frozen=True)
class StoredRule:
    rule: PromotionRule
    updated_by: str | None
    updated_at: datetime


@dataclass(frozen=True)
class RuleChange:
    component: str
    kind: str  # set | deleted
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor: str | None
    created_at: datetime


def _wire(rule: PromotionRule) -> dict[str, Any]:
    return {"minSuccessPercent": float(rule.min_success_percent), "minBakeSeconds": rule.min_bake_seconds,
            "noHalt": rule.no_halt}  # fmt: skip


def _rule(row: Row) -> PromotionRule:
    return PromotionRule(row["component"], row["min_success_percent"], int(row["min_bake_seconds"]),
                         bool(row["no_halt"]))  # fmt: skip


class PromotionRuleRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def rule(self, component: str) -> PromotionRule:
        """The component's rule, or the default rule when none is configured."""
        return self.configured(component) or default_rule(component)

    def configured(self, component: str) -> PromotionRule | None:
        """The component's rule; None when none is configured (its deploys are not checked)."""
        with self._db.statement() as cur:
            cur.execute("SELECT * FROM promotion_rules WHERE component = %s", (component,))
            row = cur.fetchone()
        return _rule(row) if row is not None else None

    def rules(self) -> list[StoredRule]:
        with self._db.statement() as cur:
            cur.execute("SELECT * FROM promotion_rules ORDER BY component")
            return [StoredRule(_rule(r), r["updated_by"], r["updated_at"]) for r in cur.fetchall()]

    def set(self, rule: PromotionRule, actor: str | None) -> StoredRule:
        """Create or replace the component's rule; the change and its before/after are audited."""
        with self._db.transaction() as cur:
            cur.execute("SELECT * FROM promotion_rules WHERE component = %s FOR UPDATE", (rule.component,))
            before = cur.fetchone()
            cur.execute(
                """
                INSERT INTO promotion_rules (component, min_success_percent, min_bake_seconds, no_halt, updated_by)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (component) DO UPDATE SET min_success_percent = EXCLUDED.min_success_percent,
                    min_bake_seconds = EXCLUDED.min_bake_seconds, no_halt = EXCLUDED.no_halt,
                    updated_by = EXCLUDED.updated_by, updated_at = NOW()
                RETURNING *
                """,
                (rule.component, rule.min_success_percent, rule.min_bake_seconds, rule.no_halt, actor),
            )
            row = cur.fetchone()
            assert row is not None  # RETURNING always yields the row
            cur.execute(
                "INSERT INTO promotion_rule_events (component, kind, before, after, actor)"
                " VALUES (%s, 'set', %s, %s, %s)",
                (rule.component, Jsonb(_wire(_rule(before))) if before else None, Jsonb(_wire(rule)), actor),
            )
            return StoredRule(_rule(row), row["updated_by"], row["updated_at"])

    def delete(self, component: str, actor: str | None) -> bool:
        """Back to the default rule; False when the component had none (nothing audited then)."""
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM promotion_rules WHERE component = %s RETURNING *", (component,))
            before = cur.fetchone()
            if before is None:
                return False
            cur.execute(
                "INSERT INTO promotion_rule_events (component, kind, before, after, actor)"
                " VALUES (%s, 'deleted', %s, NULL, %s)",
                (component, Jsonb(_wire(_rule(before))), actor),
            )
            return True

    def history(self, component: str) -> list[RuleChange]:
        with self._db.statement() as cur:
            cur.execute("SELECT * FROM promotion_rule_events WHERE component = %s ORDER BY id", (component,))
            return [RuleChange(r["component"], r["kind"], r["before"], r["after"], r["actor"], r["created_at"])
                    for r in cur.fetchall()]  # fmt: skip
