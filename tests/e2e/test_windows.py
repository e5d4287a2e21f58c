"""Maintenance windows through the real ASL, handlers, PostgreSQL and Kubernetes over HTTP, on a
controllable clock: the handlers read "now" from it, never the wall clock, and nothing sleeps for a window.

A waiting child sleeps in the WaitForWindow task (.waitForTaskToken) that times out when the window
opens by the clock, at most WINDOW_RECHECK_SECONDS later: 1 s here, so a waiting customer asks again each
second and the test moves the clock to let it start. In AWS the same task sleeps until the window opens
(or a day, then asks again), without running any Lambda; an abort wakes it at once.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from psycopg.types.json import Jsonb
from upgrader import factory

from tests.api.helpers import control, deploy

pytestmark = pytest.mark.e2e

BERLIN_SAT = {"timezone": "Europe/Berlin", "days": ["sat"], "start": "02:00", "durationMinutes": 120}
TOKYO_WEEKDAYS = {"timezone": "Asia/Tokyo", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "03:00",
                  "durationMinutes": 60}  # fmt: skip
SHORT = {"timezone": "UTC", "days": ["sun"], "start": "00:00", "durationMinutes": 15}


class ControllableClock:
    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ControllableClock:
    fake = ControllableClock(utc("2026-03-20T12:00:00"))  # a Friday
    monkeypatch.setattr(factory, "clock", lambda: fake)
    monkeypatch.setenv("WINDOW_RECHECK_SECONDS", "1")
    return fake


def test_each_customer_starts_in_its_own_window_and_waiting_holds_nobody(stack, make_customers, sql, clock):
    ids = make_customers(4)  # cust_0001 has no window
    for cid, window in zip(ids[1:], (BERLIN_SAT, TOKYO_WEEKDAYS, SHORT), strict=True):
        sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(window), cid)
    started = deploy(component="api", version="v2.0.0", strategy="all", expectedDurationMinutes=20,
                     windowDeadline="2026-03-23T00:00:00Z")  # fmt: skip
    # a 15-minute window never fits 20 minutes: left out at once, with the reason
    assert (started["waves"], started["leftOut"]) == ([3], {"outside_window": 1})
    uid = started["upgradeId"]

    # the customer without a window is upgraded at once; the others wait, each until its own opening
    waiting = stack.wait_for_status(uid, lambda s: s["completed"] == 1 and len(s["waitingForWindow"]) == 2)
    assert waiting["waitingForWindow"] == [
        {"customerId": ids[1], "nextOpening": "2026-03-21T01:00:00.000Z"},  # Saturday 02:00 in Berlin (UTC+1)
        {"customerId": ids[2], "nextOpening": "2026-03-22T18:00:00.000Z"},  # Monday 03:00 in Tokyo
    ]
    assert waiting["parameters"]["respectWindows"] is True and waiting["pending"] == 2
    assert [j.manifest["metadata"]["labels"]["upgrades.example.com/customer-id"]
            for j in stack.cluster.created_jobs] == [ids[0]]  # fmt: skip

    # Saturday 02:30 in Berlin: the Berlin customer starts; Tokyo's still waits
    clock.set(utc("2026-03-21T01:30:00"))
    after = stack.wait_for_status(uid, lambda s: s["completed"] == 2)
    assert [w["customerId"] for w in after["waitingForWindow"]] == [ids[2]]

    # Sunday 19:30 UTC: Tokyo's Monday window has closed and the next one is past the deadline
    clock.set(utc("2026-03-22T19:30:00"))
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    final = stack.status(uid)
    assert (final["status"], final["completed"], final["skipped"], final["waitingForWindow"]) == (
        "completed", 2, 2, []
    )  # fmt: skip
    errors = {r["customer_id"]: r["error"] for r in sql("SELECT customer_id, error FROM customer_upgrade_logs")}
    assert "before the deadline 2026-03-23T00:00:00.000Z" in errors[ids[2]]
    assert "shorter than the expected 20 min" in errors[ids[3]]
    assert len(stack.cluster.created_jobs) == 2


def test_without_windows_nothing_waits(stack, make_customers, clock):
    make_customers(3)
    started = deploy(component="api", version="v2.0.1", strategy="all")
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    final = stack.status(started["upgradeId"])
    assert (final["completed"], final["parameters"].get("respectWindows")) == (3, None)


def test_abort_wakes_customers_asleep_until_a_far_window(stack, make_customers, sql, clock, monkeypatch):
    # the waits end only at the opening (a day's re-check at most): only the abort can end them early
    monkeypatch.setenv("WINDOW_RECHECK_SECONDS", "86400")
    ids = make_customers(3)  # cust_0001 has no window
    for cid in ids[1:]:
        sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(BERLIN_SAT), cid)
    started = deploy(component="api", version="v2.0.0", strategy="all", expectedDurationMinutes=20,
                     windowDeadline="2026-04-01T00:00:00Z")  # fmt: skip
    uid = started["upgradeId"]
    stack.wait_for_status(uid, lambda s: s["completed"] == 1 and len(s["waitingForWindow"]) == 2)
    # each sleeping child keeps its task token on its customer's row
    stack.wait_for(lambda: len(sql("SELECT id FROM customer_upgrade_logs WHERE window_token IS NOT NULL")) == 2)

    code, answer = control("abort", uid, {"reason": "bad release"})
    assert code == 202, answer
    # the waits are released: the execution ends now, not at Saturday's opening
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    final = stack.status(uid)
    assert (final["status"], final["completed"], final["skipped"], final["waitingForWindow"]) == (
        "aborted", 1, 2, []
    )  # fmt: skip
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs")}
    assert [rows[c]["status"] for c in ids[1:]] == ["skipped", "skipped"]
    assert all("bad release" in rows[c]["error"] for c in ids[1:])
    assert all(rows[c]["window_token"] is None for c in ids)
    assert [j.manifest["metadata"]["labels"]["upgrades.example.com/customer-id"]
            for j in stack.cluster.created_jobs] == [ids[0]]  # fmt: skip


def test_a_failure_budget_halt_wakes_customers_asleep_until_a_far_window(stack, make_customers, sql, clock,
                                                                         monkeypatch):  # fmt: skip
    # the waits end only at the opening (a day's re-check at most): only the halt can end them early
    monkeypatch.setenv("WINDOW_RECHECK_SECONDS", "86400")
    ids = make_customers(4)  # wave 1: cust_0001 (no window, its helm fails), cust_0002, cust_0003; wave 2: cust_0004
    for cid in ids[1:3]:
        sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(BERLIN_SAT), cid)
    stack.cluster.fail_customers.add(ids[0])
    stack.cluster.hold()  # the failing helm runs until both others are asleep
    started = deploy(component="api", version="v2.0.0", strategy="batch", batchSize=3, expectedDurationMinutes=20,
                     windowDeadline="2026-04-01T00:00:00Z")  # fmt: skip
    uid = started["upgradeId"]
    assert started["waves"] == [3, 1]
    stack.wait_for(lambda: len(sql("SELECT id FROM customer_upgrade_logs WHERE window_token IS NOT NULL")) == 2)
    waiting = stack.status(uid)
    assert [w["customerId"] for w in waiting["waitingForWindow"]] == ids[1:3]

    stack.cluster.release()  # cust_0001 fails: wave 1 is over its budget (none tolerated), the upgrade halts
    # the sleeping customers are woken by the halt: the execution ends now, not at Saturday's opening
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    reason = "wave 1 of 2: 1 of 3 customers failed (tolerated: 0)"
    final = stack.status(uid)
    assert (final["status"], final["haltReason"], final["completed"], final["failed"], final["skipped"],
            final["waitingForWindow"]) == ("halted", reason, 0, 1, 3, [])  # fmt: skip
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs")}
    assert [rows[c]["status"] for c in ids] == ["failed", "skipped", "skipped", "skipped"]
    assert [rows[c]["error"] for c in ids[1:]] == [f"not started: {reason}"] * 3
    assert all(rows[c]["window_token"] is None for c in ids)
    counters = sql("SELECT completed_customers, failed_customers FROM system_upgrades WHERE id = %s", int(uid))
    assert counters == [{"completed_customers": 0, "failed_customers": 1}]
    # no helm Job for a woken customer, nor for the wave that never started
    assert [j.manifest["metadata"]["labels"]["upgrades.example.com/customer-id"]
            for j in stack.cluster.created_jobs] == [ids[0]]  # fmt: skip
