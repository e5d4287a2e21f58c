"""The connection handling against the real server: reuse, dropped connections, migrations."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from upgrader.infra import db as db_module
from upgrader.infra.db import Database
from upgrader.infra.errors import DatabaseUnavailable
from upgrader.infra.migrate import apply_migrations


def _kill(database_url: str, pid: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _one(cur: Any) -> dict[str, Any]:
    row = cur.fetchone()
    assert row is not None, "the query returned no row"
    return row


def test_connection_is_reused_across_units_of_work(database_url):
    database = Database(database_url)
    with database.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        first = _one(cur)["pid"]
    with database.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        assert _one(cur)["pid"] == first


def test_a_connection_dropped_during_a_unit_of_work_fails_it_then_reconnects(database_url):
    database = Database(database_url)
    with pytest.raises(DatabaseUnavailable), database.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        pid = _one(cur)["pid"]
        _kill(database_url, pid)
        cur.execute("SELECT 1")
    with database.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        assert _one(cur)["pid"] != pid


def test_a_connection_the_server_ended_between_units_of_work_is_replaced_before_use(database_url):
    """A warm function whose connection the server terminated (pg_terminate_backend, a failover, an idle timeout
    that says so) a moment ago: the next request is served, not answered 503. Seen in the e2e suite: the API's
    connection killed by tests/e2e/test_faults.py, used again seconds later (within IDLE_PROBE_SECONDS)."""
    database = Database(database_url)
    with database.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        pid = _one(cur)["pid"]
    held = database.connection()
    _kill(database_url, pid)
    deadline = time.monotonic() + 5
    while not db_module._server_spoke(held) and time.monotonic() < deadline:
        time.sleep(0.01)  # the FATAL message is on its way
    assert db_module._server_spoke(held), "the server did not say it ended the connection"
    with database.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        assert _one(cur)["pid"] != pid


def test_an_idle_dropped_connection_is_replaced_before_use(database_url, monkeypatch):
    database = Database(database_url)
    with database.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        pid = _one(cur)["pid"]
    _kill(database_url, pid)
    monkeypatch.setattr(db_module, "IDLE_PROBE_SECONDS", -1.0)  # as if the Lambda sat idle
    with database.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        assert _one(cur)["pid"] != pid


def test_sessions_run_in_utc(database_url):
    with Database(database_url).transaction() as cur:
        cur.execute("SHOW timezone")
        assert _one(cur)["TimeZone"] == "UTC"


def test_migrations_are_rerunnable(database_url):
    assert apply_migrations(database_url) == []
    with psycopg.connect(database_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == ["001_spec_tables.sql", "002_inventory.sql", "003_orchestration.sql", "004_exact_changes.sql",
                     "005_fleet_inventory.sql", "006_helm_durations_and_rollback_index.sql", "007_policies.sql",
                     "008_events.sql", "009_window_tokens.sql", "010_run_window_waits.sql",
                     "020_notice_keys_per_run.sql", "060_helm_outputs.sql", "070_analysis_measurements.sql",
                     "080_rings_and_promotions.sql", "081_ring_labels.sql",
                     "085_analysis_verdicts.sql", "090_release_trains.sql",
                     "091_wave_rollback.sql", "092_images.sql", "093_image_tag_moves.sql",
                     "094_image_digests.sql"]  # fmt: skip


def test_spec_columns_keep_their_types(database_url):
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_name IN ('system_upgrades', 'customer_upgrade_logs')"
        ).fetchall()
    types = {(t, c): d for t, c, d in rows}
    assert types[("system_upgrades", "id")] == "integer"
    assert types[("system_upgrades", "metadata")] == "jsonb"
    assert types[("system_upgrades", "created_at")] == "timestamp without time zone"
    assert types[("customer_upgrade_logs", "upgrade_id")] == "integer"
    assert types[("customer_upgrade_logs", "output")] == "text"
    for column in ("component", "strategy", "status"):
        assert types[("system_upgrades", column)] == "character varying"


def test_without_startup_options_the_session_settings_are_sent_as_statements(database_url, monkeypatch):
    # RDS Proxy refuses libpq's `options` parameter: the same settings must arrive another way.
    sent: list[object] = []
    connect = psycopg.connect

    def recording_connect(*a: Any, **kw: Any) -> Any:
        sent.append(kw.get("options"))
        return connect(*a, **kw)

    monkeypatch.setattr(psycopg, "connect", recording_connect)
    database = Database(database_url, startup_options=False)

    with database.transaction() as cur:
        cur.execute("SELECT current_setting('TimeZone') AS tz, current_setting('statement_timeout') AS st,"
                    " current_setting('lock_timeout') AS lt")  # fmt: skip
        settings = cur.fetchone()

    assert sent == [None]
    assert settings == {"tz": "UTC", "st": "15s", "lt": "10s"}
