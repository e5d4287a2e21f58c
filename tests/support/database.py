"""A fresh PostgreSQL database per test session on the machine's real server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from upgrader.infra.migrate import apply_migrations

ADMIN_URL = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLES = (
    "promotion_overrides, promotion_rule_events, promotion_rules, "
    "analysis_measurements, analysis_verdicts, compatibility_rules, event_deliveries, event_outbox, slack_messages, slack_replies, idempotency_keys, inventory_syncs, customer_events, customer_pins, customer_leases, upgrade_runs, "
    "image_tag_moves, customer_upgrade_logs, customer_image_repositories, customer_component_versions, system_upgrades, "
    "customers"
)


def url_for(dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=dbname)


@contextmanager
def temporary_database(prefix: str = "upgrades_test") -> Iterator[str]:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # Commits of a throwaway database need not wait for the disk (durability is not under test).
        conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name)))
    url = url_for(name)
    try:
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def truncate_all(url: str) -> None:
    """Every table empty and every sequence back at 1, as TRUNCATE ... RESTART IDENTITY leaves them.

    DELETE of these few rows takes ~6 ms where TRUNCATE takes ~100 ms (it rewrites the tables), and
    the suite empties the database before every test; TRUNCATE remains the fallback when a table
    added later is referenced by one listed after it."""
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            with conn.transaction():
                for table in [t.strip() for t in TABLES.split(",")]:
                    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
                for (sequence,) in conn.execute(
                    "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
                ).fetchall():
                    conn.execute("SELECT setval(%s, 1, false)", (sequence,))
        except psycopg.errors.ForeignKeyViolation:
            conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, to prove a rejected request wrote nothing."""
    out: dict[str, list[tuple]] = {}
    with psycopg.connect(url) as conn:
        for table in [t.strip() for t in TABLES.split(",")]:
            out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        out["sequences"] = conn.execute(
            "SELECT last_value FROM system_upgrades_id_seq"
            " UNION ALL SELECT last_value FROM customer_upgrade_logs_id_seq"
        ).fetchall()
    return out
