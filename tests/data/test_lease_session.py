"""What a lease session reads and writes, statement by statement, against the real PostgreSQL (the
session's own writes: skip, defer, give back, wait, the plan and the Job; the rows it calls final; a
rollback row's upgrade row; the holder it names). Each test names the mutants of `rollout/leases.py` it
kills (`make mutants MODULE=leases`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from upgrader import factory
from upgrader.infra.errors import LogRowNotFound
from upgrader.rollout.run_records import UpgradedLog

from tests.api.helpers import deploy, rollback


def _log_id(sql: Any, upgrade_id: str, customer_id: str = "cust_0001", operation: str = "upgrade") -> int:
    rows = sql("SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s AND customer_id = %s AND operation = %s",
               int(upgrade_id), customer_id, operation)  # fmt: skip
    return int(rows[0]["id"])


def _row(sql: Any, log_id: int) -> dict[str, Any]:
    return sql("SELECT * FROM customer_upgrade_logs WHERE id = %s", log_id)[0]


def _leases(sql: Any) -> list[int]:
    return [r["log_id"] for r in sql("SELECT log_id FROM customer_leases ORDER BY log_id")]


@pytest.fixture
def started(make_customers: Any, fake_workflow: Any, sql: Any) -> int:
    """One customer's upgrade row, claimed by its worker (in_progress), no lease yet."""
    make_customers(1)
    log_id = _log_id(sql, deploy()["upgradeId"])
    factory.runs().claim_customer(log_id)
    return log_id


@pytest.mark.parametrize("status", ["completed", "failed", "skipped", "rolled_back"])
def test_a_finished_row_is_final_and_takes_no_lease(started: int, sql: Any, status: str) -> None:
    """A row that has ended (each final status) is `final` and takes no lease: nothing is started for it.

    Kills `rollout/leases.py:51`: each status of `FINAL_LOG_STATUSES` renamed (`"XXcompletedXX"`,
    `"XXfailedXX"`, `"XXskippedXX"`, `"XXrolled_backXX"`): the row then takes the lease (`acquired`)."""
    sql("UPDATE customer_upgrade_logs SET status = %s WHERE id = %s", status, started)
    with factory.leases().session(started) as lease:
        assert (lease.state, lease.holder) == ("final", None)
    assert _leases(sql) == []


def test_a_rollback_row_reads_what_its_upgrade_recorded_from_the_release(make_customers, fake_workflow, sql):
    """`upgraded_row()`: a rollback row sees the versions and revisions its upgrade row read from the release;
    an upgrade row has none.

    Kills `rollout/leases.py:99` (`rollback_of is None` → `is not None`, `"rollback_of"` renamed) and
    `:101` (`"upgraded_"` renamed in `removeprefix` and in `startswith`)."""
    make_customers(1)
    uid = deploy()["upgradeId"]
    upgrade_row = _log_id(sql, uid)
    sql(
        """UPDATE customer_upgrade_logs SET status = 'completed', version_before = 'v1.1.0', version_after = 'v1.2.0',
                  revision_before = 4, revision_after = 5, job_name = 'helm-upgrade-x' WHERE id = %s""",
        upgrade_row,
    )
    sql("UPDATE system_upgrades SET status = 'completed' WHERE id = %s", int(uid))
    sql("UPDATE upgrade_runs SET status = 'ended' WHERE upgrade_id = %s", int(uid))
    code, data = rollback(uid, "cust_0001")
    assert code == 202, data

    with factory.leases().session(int(data["rollbackId"])) as lease:
        assert lease.upgraded_row() == UpgradedLog(version_before="v1.1.0", version_after="v1.2.0",
                                                   revision_before=4, revision_after=5)  # fmt: skip
        assert lease.budget_exceeded() is None  # a rollback row has no failure budget
    with factory.leases().session(upgrade_row) as lease:
        assert lease.upgraded_row() is None


def test_a_session_that_records_no_plan_keeps_the_plan_recorded_before(started: int, sql: Any) -> None:
    """A retry (the lease `held`) that records nothing, or only skips or defers the row, leaves what an
    earlier session read from the release on the row: a session writes only what it was told to.

    Kills `rollout/leases.py:71` (`_plan = None` → `= ""`: every session then writes an empty plan when it
    ends), `:105` (in `skip`) and `:122` (in `defer`), each `self._plan = None` → `self._plan = ""`."""
    leases = factory.leases()
    with leases.session(started) as lease:
        assert lease.state == "acquired"
        lease.record_plan(revision_before=2, version_before="v1.1.0", chart_version="1.5.0")
    with leases.session(started) as lease:
        assert lease.state == "held"
    assert (_row(sql, started)["revision_before"], _row(sql, started)["version_before"]) == (2, "v1.1.0")

    opens = datetime(2030, 1, 5, 2, 0, tzinfo=UTC)
    with leases.session(started) as lease:
        lease.defer(opens)
    row = _row(sql, started)
    assert (row["status"], row["window_opens_at"], row["revision_before"], row["version_before"]) == (
        "pending", opens.replace(tzinfo=None), 2, "v1.1.0")  # fmt: skip
    assert _leases(sql) == []  # deferred: the lease is given back

    factory.runs().claim_customer(started)
    with leases.session(started) as lease:
        assert lease.state == "acquired"
        lease.skip("its window closed for good")
    row = _row(sql, started)
    assert (row["status"], row["error"], row["revision_before"], row["version_before"]) == (
        "skipped", "its window closed for good", 2, "v1.1.0")  # fmt: skip
    assert _leases(sql) == []  # skipped: the lease is given back


def test_give_back_returns_the_lease_and_changes_nothing_else(started: int, sql: Any) -> None:
    """Kills `rollout/leases.py:136`: the statement of `give_back` renamed (`"XXDELETE ...XX"`)."""
    with factory.leases().session(started) as lease:
        assert lease.state == "acquired"
    assert _leases(sql) == [started]
    with factory.leases().session(started) as lease:
        assert lease.state == "held"
        lease.give_back()
    assert _leases(sql) == []
    assert _row(sql, started)["status"] == "in_progress"


def test_the_plan_goes_out_with_the_job_name_its_chart_and_both_notes(started: int, sql: Any) -> None:
    """`record_plan` then `record_job`: one UPDATE writes the Job's name, the release's revision, version and
    chart before helm, and the plan's note and the Job's note as two lines of the row's output.

    Kills `rollout/leases.py:152` (the plan's `"chart"` key renamed: the chart is not written) and `:157`
    (`"\\n".join` → `"XX\\nXX".join`, `(plan or {})` → `(plan and {})`, `.get("note")` renamed, `or None` →
    `and None`)."""
    with factory.leases().session(started) as lease:
        lease.record_plan(revision_before=7, version_before="v1.1.0", chart_version="1.5.3", note="release read")
        lease.record_job("helm-upgrade-1-cust-0001", note="job created")
    row = _row(sql, started)
    assert (row["job_name"], row["revision_before"], row["version_before"], row["chart_version"]) == (
        "helm-upgrade-1-cust-0001", 7, "v1.1.0", "1.5.3")  # fmt: skip
    assert row["output"] == "release read\njob created"
    # a Job recorded without any note leaves the output as it was
    with factory.leases().session(started) as lease:
        lease.record_job("helm-upgrade-1-cust-0001-b")
    assert (_row(sql, started)["job_name"], _row(sql, started)["output"]) == (
        "helm-upgrade-1-cust-0001-b", "release read\njob created")  # fmt: skip


def test_a_lease_changing_hands_is_busy_with_no_holder(started: int, sql: Any, database_url: str) -> None:
    """Another lease transaction of the same customer is open (it holds the hand-over lock, its insert not
    committed yet): the session takes nothing and finds the release `busy`, with no holder to name.

    Kills `rollout/leases.py:279` (`"busy"` → `"XXbusyXX"`)."""
    with psycopg.connect(database_url, autocommit=False) as other:
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended('cust_0001', 727002))")
        with factory.leases().session(started) as lease:
            assert (lease.state, lease.holder) == ("busy", None)
        other.rollback()
    assert _leases(sql) == []


def test_an_unknown_log_row_is_named_in_the_error(env: Any) -> None:
    """Kills `rollout/leases.py:261` (the message renamed)."""
    with pytest.raises(LogRowNotFound, match=r"^customer log row 987654 not found$"), factory.leases().session(987654):
        pass
