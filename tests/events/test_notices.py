"""Customer notices from a plan with maintenance windows: upcoming (within the lead time of the planned
start), done with the result, cancelled on abort for those told and not reached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from upgrader import events, factory
from upgrader.notices import next_window_start

from tests.api.helpers import control, deploy

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _window(opens: datetime) -> dict[str, object]:
    return {"timezone": "UTC", "days": [DAYS[opens.weekday()]], "start": opens.strftime("%H:%M"),
            "durationMinutes": 60}  # fmt: skip


def _notices(sql, detail_type: str) -> dict[str, dict]:
    rows = sql("SELECT customer_id, detail FROM event_outbox WHERE detail_type = %s ORDER BY id", detail_type)
    return {r["customer_id"]: r["detail"] for r in rows}


def test_the_next_opening_of_a_window():
    monday_9 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday
    window = {"timezone": "Europe/Berlin", "days": ["mon", "wed"], "start": "22:00", "durationMinutes": 120}
    assert next_window_start(window, monday_9) == datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
    inside = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: open until midnight
    assert next_window_start(window, inside) == inside
    assert next_window_start(window, datetime(2026, 11, 30, 23, 30, tzinfo=UTC)) == datetime(
        2026, 12, 2, 21, 0, tzinfo=UTC)  # fmt: skip


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


def test_a_later_wave_is_announced_once_it_is_reached(repo, make_customers, fake_workflow, sql):
    make_customers(4)
    started = deploy(strategy="batch", batchSize=2)
    uid, name = int(started["upgradeId"]), started["jobId"]
    factory.runs().start_run(uid, name, "upgrade")
    assert factory.notices().upcoming(3600) == 2  # the first wave only
    factory.runs().set_current_wave(uid, 1)
    assert factory.notices().upcoming(3600) == 2
    assert len(_notices(sql, events.NOTICE_UPCOMING)) == 4


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
