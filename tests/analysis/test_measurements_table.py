"""analysis_measurements (migration 070) takes the stored shape of a measurement as it is, keeps one row per
(upgrade, wave, round, check, customer) when a retried step writes again, and refuses a row that says nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from upgrader.analysis.measurements import INSERT_MEASUREMENT, Measurement, StoredMeasurement

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def upgrade_id(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "INSERT INTO system_upgrades (component, to_version, strategy, status) VALUES ('api', 'v9', 'canary', 'completed') RETURNING id"
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_a_measurement_is_stored_once_and_read_back_as_it_was(database_url, upgrade_id):
    measured = Measurement("error-rate", "cust_a", "upgraded", 'sum(x{customer="cust_a"})', AT, value=0.031)
    stored = StoredMeasurement(upgrade_id, 0, 2, measured.judged("fail"))
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT_MEASUREMENT, stored.row())
        conn.execute(INSERT_MEASUREMENT, stored.row())  # a retried step
        rows = conn.execute(
            f"SELECT {', '.join(StoredMeasurement.COLUMNS)} FROM analysis_measurements WHERE upgrade_id = %s",
            (upgrade_id,),
        ).fetchall()
    assert rows == [(upgrade_id, 0, 2, "error-rate", "cust_a", "upgraded", 'sum(x{customer="cust_a"})', AT, 0.031,
                     None, "fail")]  # fmt: skip


def test_a_row_without_a_value_needs_its_error_and_the_cohort_is_one_of_two(database_url, upgrade_id):
    timed_out = Measurement("error-rate", "cust_b", "control", "q", AT, error="timeout after 10 s")
    with psycopg.connect(database_url) as conn:
        conn.execute(INSERT_MEASUREMENT, StoredMeasurement(upgrade_id, 0, 0, timed_out).row())
    silent = {**StoredMeasurement(upgrade_id, 0, 1, timed_out).row(), "error": None}
    with pytest.raises(psycopg.errors.CheckViolation), psycopg.connect(database_url) as conn:
        conn.execute(INSERT_MEASUREMENT, silent)
    elsewhere = {**StoredMeasurement(upgrade_id, 0, 1, timed_out).row(), "cohort": "canary"}
    with pytest.raises(psycopg.errors.CheckViolation), psycopg.connect(database_url) as conn:
        conn.execute(INSERT_MEASUREMENT, elsewhere)
