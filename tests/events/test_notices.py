"""Customer notices from a plan with maintenance windows: upcoming (within the lead time of the planned
start), done with the result, cancelled for those told and not reached when the upgrade stops (abort,
halt, the end of its run); once per customer and run, so a resumed customer is told again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from upgrader import factory
from upgrader.notifications import events
from upgrader.rollout.halts import halt as _halt
from upgrader.rollout.notices import planned_start

from tests.api.helpers import control, deploy
from tests.data.test_reconciliation import FakeCluster, resume

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIGRATION = Path(__file__).resolve().parents[2] / "layers/shared/upgrader/infra/migrations/020_notice_keys_per_run.sql"


def _window(opens: datetime, minutes: int = 60, days: tuple[str, ...] | None = None) -> dict[str, object]:
    return {"timezone": "UTC", "days": list(days or [DAYS[opens.weekday()]]), "start": opens.strftime("%H:%M"),
            "durationMinutes": minutes}  # fmt: skip


def _notices(sql, detail_type: str) -> dict[str, dict]:
    rows = sql("SELECT customer_id, detail FROM event_outbox WHERE detail_type = %s ORDER BY id", detail_type)
    return {r["customer_id"]: r["detail"] for r in rows}


def _told(sql: Any, customer_id: str) -> list[str]:
    """What a customer heard, in order (its notices and outcome events), by run."""
    rows = sql("SELECT detail_type, detail FROM event_outbox WHERE customer_id = %s ORDER BY id", customer_id)
    short = {events.NOTICE_UPCOMING: "upcoming", events.NOTICE_CANCELLED: "cancelled", events.NOTICE_DONE: "done",
             events.CUSTOMER_UPGRADED: "upgraded", events.CUSTOMER_FAILED: "failed"}  # fmt: skip
    return [short[r["detail_type"]] for r in rows if r["detail_type"] in short]


def test_the_planned_start_leaves_room_for_the_expected_duration():
    """The notice's planned start is the windows' own decision (`windows.decide`), not a second reading of
    the window. Breakage tried: the former `next_window_start` (an open window counts as now, whatever is
    left of it): caught by the first assertion."""
    monday_2230 = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # a Monday
    window = {"timezone": "UTC", "days": ["mon", "tue"], "start": "22:00", "durationMinutes": 60}
    parameters = {"respectWindows": True, "windowDeadline": "2027-01-31T00:00:00Z", "expectedDurationSeconds": 2700}
    # 30 of its 60 minutes left, 45 expected: the next opening, Tuesday 22:00
    assert planned_start(window, parameters, monday_2230) == datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    # with 15 minutes expected it starts now
    assert planned_start(window, {**parameters, "expectedDurationSeconds": 900}, monday_2230) == monday_2230
    # a window that does not open before the deadline: it is skipped, so it is never told
    assert planned_start(window, {**parameters, "windowDeadline": "2026-12-01T12:00:00Z"}, monday_2230) is None
    # an upgrade that does not respect windows starts each customer as its wave runs
    assert planned_start(window, {}, monday_2230) == monday_2230


def test_upcoming_notices_follow_the_windows_and_an_abort_cancels_them(repo, make_customers, fake_workflow, sql):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    make_customers(3)
    repo.upsert_customer("cust_0001", "customer-0001", "customer-0001",
                         maintenance_window=_window(now + timedelta(minutes=30)))  # fmt: skip
    repo.upsert_customer("cust_0002", "customer-0002", "customer-0002",
                         maintenance_window=_window(now + timedelta(hours=5)))  # fmt: skip
    started = deploy(strategy="all")  # cust_0003 has no window: it starts as soon as its wave runs
    uid = started["upgradeId"]
    factory.runs().start_run(int(uid), started["jobId"], "upgrade")

    assert factory.notices().upcoming(3600, now=now) == 2
    assert factory.notices().upcoming(3600, now=now) == 0  # once
    upcoming = _notices(sql, events.NOTICE_UPCOMING)
    assert set(upcoming) == {"cust_0001", "cust_0003"}
    planned = upcoming["cust_0001"]["notice"]["plannedStart"]
    assert planned == (now + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:00.000Z")
    assert upcoming["cust_0001"]["customer"]["status"] == "pending"

    code, _ = control("abort", uid, {"reason": "found a bug"})
    assert code == 202
    cancelled = _notices(sql, events.NOTICE_CANCELLED)
    assert set(cancelled) == {"cust_0001", "cust_0003"}  # told and not reached; cust_0002 was never told
    assert cancelled["cust_0001"]["notice"]["reason"].endswith("found a bug")
    assert factory.notices().upcoming(10 * 3600, now=now) == 0  # an aborted upgrade announces nothing more


def test_a_customer_whose_window_opens_exactly_the_lead_time_away_is_told_with_the_notice_fields(
    repo, make_customers, fake_workflow, sql
):  # fmt: skip
    """The lead time is inclusive, and the notice carries its planned start, lead and window (mutants killed:
    `> lead_seconds` made `>=`; the `leadSeconds` or `window` field name replaced)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    make_customers(1)
    window = _window(now + timedelta(hours=1))
    repo.upsert_customer("cust_0001", "customer-0001", "customer-0001", maintenance_window=window)
    started = deploy(strategy="all")
    factory.runs().start_run(int(started["upgradeId"]), started["jobId"], "upgrade")
    assert factory.notices().upcoming(3600 - 1, now=now) == 0
    assert factory.notices().upcoming(3600, now=now) == 1
    planned = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:00.000Z")
    notice = _notices(sql, events.NOTICE_UPCOMING)["cust_0001"]["notice"]
    assert notice == {"plannedStart": planned, "leadSeconds": 3600, "window": window}


def test_a_later_wave_is_announced_once_it_is_reached(repo, make_customers, fake_workflow, sql):
    make_customers(4)
    started = deploy(strategy="batch", batchSize=2)
    uid, name = int(started["upgradeId"]), started["jobId"]
    factory.runs().start_run(uid, name, "upgrade")
    assert factory.notices().upcoming(3600) == 2  # the first wave only
    factory.runs().set_current_wave(uid, 1)
    assert factory.notices().upcoming(3600) == 2
    assert len(_notices(sql, events.NOTICE_UPCOMING)) == 4


def test_one_drain_tells_at_most_500_customers_and_the_next_drain_tells_the_rest(make_customers, fake_workflow, sql):
    """A drain's batch is bounded, and a drain skips the customers already told, so a fleet larger than one
    batch is told in full by the drains that follow (mutants killed: the batch of 500 -> 501; the
    already-told check looking for another key, which makes every later drain re-read the first 500)."""
    make_customers(501)
    started = deploy(strategy="all")
    factory.runs().start_run(int(started["upgradeId"]), started["jobId"], "upgrade")
    assert factory.notices().upcoming(3600) == 500
    assert factory.notices().upcoming(3600) == 1
    assert factory.notices().upcoming(3600) == 0
    assert len(_notices(sql, events.NOTICE_UPCOMING)) == 501


def test_a_customer_started_before_any_drain_is_told_at_its_start_once(make_customers, fake_workflow, sql):
    # Given a customer whose wave started and who is claimed before the publisher's drain ran
    make_customers(2)
    started = deploy(strategy="all")
    uid, name = int(started["upgradeId"]), started["jobId"]
    runs = factory.runs()
    runs.start_run(uid, name, "upgrade")
    [row] = sql("SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s AND customer_id = 'cust_0001'", uid)

    # When it is claimed (twice: a retried delivery) and finishes, and only then a drain runs
    runs.claim_customer(row["id"])
    runs.claim_customer(row["id"])
    runs.finish_customer(row["id"], "completed", "ok", None)
    factory.notices().upcoming(3600)

    # Then it was told once, at its start, before it was told it is done; the other customer by the drain
    upcoming = _notices(sql, events.NOTICE_UPCOMING)
    assert set(upcoming) == {"cust_0001", "cust_0002"}
    assert upcoming["cust_0001"]["customer"]["status"] == "in_progress"
    assert upcoming["cust_0001"]["notice"]["leadSeconds"] == 3600 and upcoming["cust_0001"]["notice"]["window"] is None
    order = [r["detail_type"] for r in sql(
        "SELECT detail_type FROM event_outbox WHERE customer_id = 'cust_0001' ORDER BY id")]  # fmt: skip
    assert order == [events.NOTICE_UPCOMING, events.CUSTOMER_UPGRADED, events.NOTICE_DONE]


def test_a_resumed_customer_is_told_again_and_a_second_abort_cancels_again(make_customers, fake_workflow, sql):
    """Issue 27, defect 3, as reproduced: a canary of 25 % of 4 customers, aborted at its gate, resumed
    (twice). Breakage tried: the notice keys per log row alone (`'notice-upcoming:' || l.id`), as before:
    after the resume nobody is told again (0 notices, not 3) and the second abort cancels nothing."""
    make_customers(4)
    started = deploy(strategy="canary", canaryPercent=25)
    uid, run = int(started["upgradeId"]), started["jobId"]
    runs, notices = factory.runs(), factory.notices()
    rows = {r["customer_id"]: r["id"] for r in sql("SELECT id, customer_id FROM customer_upgrade_logs")}
    later = ["cust_0002", "cust_0003", "cust_0004"]
    runs.start_run(uid, run, "upgrade")
    assert notices.upcoming(3600) == 1  # the canary
    runs.claim_customer(rows["cust_0001"])
    runs.finish_customer(rows["cust_0001"], "completed", "ok", None)
    assert runs.store_task_token(uid, "canary-gate", 1)  # AwaitContinue: the next wave is reached
    assert notices.upcoming(3600) == 3

    # When it is aborted at the gate, resumed, aborted again and resumed again
    for _ in range(2):
        assert control("abort", str(uid), {"reason": "found a bug"})[0] == 202
        runs.finalize_upgrade(uid, run, None)
        code, resumed = resume(str(uid))
        assert code == 202 and resumed["customers"] == 3, resumed
        run = resumed["jobId"]
        runs.start_run(uid, run, "upgrade")
        assert notices.upcoming(3600) == 3  # told again, before anything starts
    # and the last run upgrades them (started before a drain could tell them: told at their start)
    for customer in later:
        runs.claim_customer(rows[customer])
        runs.finish_customer(rows[customer], "completed", "ok", None)

    # Then each heard every stop and every new start, in order, and the canary nothing after its upgrade
    assert _told(sql, "cust_0001") == ["upcoming", "upgraded", "done"]
    for customer in later:
        assert _told(sql, customer) == ["upcoming", "cancelled", "upcoming", "cancelled", "upcoming", "upgraded",
                                        "done"], customer  # fmt: skip
    cancelled = sql("SELECT detail FROM event_outbox WHERE detail_type = %s AND customer_id = 'cust_0002'"
                    " ORDER BY id", events.NOTICE_CANCELLED)  # fmt: skip
    assert len({c["detail"]["customer"]["runName"] for c in cancelled}) == 2


def test_a_budget_halt_cancels_the_notices_of_the_customers_it_stops_once(make_customers, fake_workflow, sql):
    """Issue 27, defect 6. Breakage tried: `_halt` without `events.cancel_notices` (no Cancelled at the
    halt): caught by the first assertion on the cancellations."""
    # Given a single-wave upgrade tolerating no failure whose 4 customers were told; cust_0001's helm runs,
    # cust_0002 is claimed and waits for its lease
    make_customers(4)
    started = deploy(strategy="all", maxConcurrency=2)
    uid, run = int(started["upgradeId"]), started["jobId"]
    runs = factory.runs()
    runs.start_run(uid, run, "upgrade")
    assert factory.notices().upcoming(3600) == 4
    rows = {r["customer_id"]: r["id"] for r in sql("SELECT id, customer_id FROM customer_upgrade_logs")}
    runs.claim_customer(rows["cust_0001"])
    runs.claim_customer(rows["cust_0002"])
    with factory.leases().session(rows["cust_0001"]) as lease:
        lease.record_job("helm-upgrade-1")

    # When cust_0001 fails (the halt), the step is retried, and the run is finalized
    runs.finish_customer(rows["cust_0001"], "failed", None, "helm failed", None)
    halt = "wave 1 of 1: 1 of 4 customers failed (tolerated: 0)"
    assert sql("SELECT halt_reason FROM system_upgrades")[0]["halt_reason"] == halt
    # Then every customer it stops before it started is told at once, with the halt's reason
    cancelled = _notices(sql, events.NOTICE_CANCELLED)
    assert sorted(cancelled) == ["cust_0002", "cust_0003", "cust_0004"]
    assert {c["notice"]["reason"] for c in cancelled.values()} == {halt}
    runs.finish_customer(rows["cust_0001"], "failed", None, "helm failed", None)
    with factory.leases().session(rows["cust_0002"]) as lease:
        assert lease.stop_reason == halt
        lease.skip(f"not started: {halt}")
    runs.finalize_upgrade(uid, run, None)
    # and once: the retry, the skip and FinalizeRun add nothing
    assert len(sql("SELECT 1 FROM event_outbox WHERE detail_type = %s", events.NOTICE_CANCELLED)) == 3
    assert _told(sql, "cust_0001") == ["upcoming", "failed"]
    for customer in ("cust_0002", "cust_0003", "cust_0004"):
        assert _told(sql, customer) == ["upcoming", "cancelled"], customer


def test_a_run_that_ends_before_reaching_told_customers_cancels_their_notices(make_customers, fake_workflow, sql):
    """The canary's approval timing out (FinalizeRun with the failure) and an execution that ended (the
    reconciler) stop customers as a halt does. Breakage tried: `finalize_upgrade` without its
    `events.cancel_notices` (the approval timeout told nobody): caught by the first assertion; and
    `close_dead_run` without it: caught by the second."""
    make_customers(4)
    started = deploy(strategy="canary", canaryPercent=25)
    uid, run = int(started["upgradeId"]), started["jobId"]
    runs = factory.runs()
    runs.start_run(uid, run, "upgrade")
    assert runs.store_task_token(uid, "canary-gate", 1)
    assert factory.notices().upcoming(3600) == 4

    runs.finalize_upgrade(uid, run, "States.Timeout: the canary's approval timed out")

    cancelled = _notices(sql, events.NOTICE_CANCELLED)
    assert sorted(cancelled) == ["cust_0001", "cust_0002", "cust_0003", "cust_0004"]
    assert {c["notice"]["reason"] for c in cancelled.values()} == {"States.Timeout: the canary's approval timed out"}

    # resumed, told again, and its execution stopped in the console: the reconciler tells them
    code, resumed = resume(str(uid))
    assert code == 202, resumed
    runs.start_run(uid, resumed["jobId"], "upgrade")
    assert factory.notices().upcoming(3600) == 4
    from upgrader.rollout import reconciliation

    reconciliation.reconcile_execution(resumed["jobId"], "ABORTED", "Stopped", "stopped in the console",
                                       recon=factory.reconcile(), runs=runs, cluster=FakeCluster())  # fmt: skip
    assert len(sql("SELECT 1 FROM event_outbox WHERE detail_type = %s", events.NOTICE_CANCELLED)) == 8
    assert _told(sql, "cust_0001") == ["upcoming", "cancelled", "upcoming", "cancelled"]


def test_a_drain_that_meets_a_halt_being_written_tells_nobody(make_customers, fake_workflow, sql, database_url):
    """The drain reads the upgrade's row FOR SHARE (SKIP LOCKED): while a stop is being written it leaves
    that upgrade's customers to a later drain, which sees the stop; so it never tells a customer after the
    stop's cancellations were written. Breakage tried: the drain's read without `FOR SHARE OF u SKIP LOCKED`
    (it read the upgrade as not halted and told both customers, whom no Cancelled would reach): caught by
    the first assertion."""
    make_customers(2)
    started = deploy(strategy="all")
    uid = int(started["upgradeId"])
    factory.runs().start_run(uid, started["jobId"], "upgrade")
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        with conn.cursor() as cur:
            _halt(cur, uid, "halted while the drain runs")  # the halt's transaction, not committed yet
        assert factory.notices().upcoming(3600) == 0
        conn.commit()
    assert factory.notices().upcoming(3600) == 0
    assert sql("SELECT 1 FROM event_outbox WHERE detail_type LIKE 'Customer Notice%%'") == []


def test_notices_sent_before_the_keys_were_per_run_keep_their_meaning(make_customers, fake_workflow, sql,
                                                                       database_url):  # fmt: skip
    """Migration 020: a customer told (old key) in a run that still runs is not told again, and the
    migration runs twice to the same result. Breakage tried: the migration emptied (`SELECT 1;`): caught
    by the keys' assertion."""
    make_customers(2)
    started = deploy(strategy="all")
    uid, run = int(started["upgradeId"]), started["jobId"]
    factory.runs().start_run(uid, run, "upgrade")
    assert factory.notices().upcoming(3600) == 2
    sql("UPDATE event_outbox SET event_key = regexp_replace(event_key, ':[^:]+$', '')"
        " WHERE detail_type = %s", events.NOTICE_UPCOMING)  # as the former code keyed them  # fmt: skip
    sql("INSERT INTO event_outbox (event_key, detail_type, severity, detail)"
        " VALUES ('notice-upcoming:999999', %s, 'info', '{}')", events.NOTICE_UPCOMING)  # no run recorded  # fmt: skip
    with psycopg.connect(database_url) as conn:
        for _ in range(2):
            conn.execute(MIGRATION.read_text())  # type: ignore[arg-type]
    keys = sorted(r["event_key"] for r in sql("SELECT event_key FROM event_outbox WHERE detail_type = %s",
                                             events.NOTICE_UPCOMING))  # fmt: skip
    ids = sorted(r["id"] for r in sql("SELECT id FROM customer_upgrade_logs"))
    assert keys == sorted([f"notice-upcoming:{i}:{run}" for i in ids] + ["notice-upcoming:999999"])
    assert factory.notices().upcoming(3600) == 0
