"""Maintenance windows through the real ASL, handlers, PostgreSQL and Kubernetes over HTTP, on a
controllable clock: the handlers read "now" from it, never the wall clock, and nothing sleeps for a window.

A customer whose window is closed gets no child execution (it holds no concurrency slot): it stays pending
until its opening, and the run itself waits between slices of the wave, in the WaitForWindows task
(.waitForTaskToken) that times out at the earliest opening by the clock, at most WINDOW_RECHECK_SECONDS
later: 1 s here, so the run looks again each second and the test moves the clock to let customers start.
In AWS the same task sleeps until the opening (or a day, then looks again), without running any Lambda; an
abort or a failure-budget halt ends it at once.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg.types.json import Jsonb
from upgrader import factory
from upgrader.rollout import orchestration

from tests.api.helpers import control, deploy
from tests.support.functions import invoke

pytestmark = pytest.mark.e2e

BERLIN_SAT = {"timezone": "Europe/Berlin", "days": ["sat"], "start": "02:00", "durationMinutes": 120}
TOKYO_WEEKDAYS = {"timezone": "Asia/Tokyo", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "03:00",
                  "durationMinutes": 60}  # fmt: skip
SHORT = {"timezone": "UTC", "days": ["sun"], "start": "00:00", "durationMinutes": 15}
FRIDAY_NOON = {"timezone": "UTC", "days": ["fri"], "start": "11:00", "durationMinutes": 120}


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


@pytest.fixture
def sent_failures(stack, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every SendTaskFailure the product sends (the abort's and the halt's included), passed on to the
    engine: (token, error, cause)."""
    real = factory.workflow()
    sent: list[tuple[str, str, str]] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def send_failure(self, token: str, error: str, cause: str) -> None:
            sent.append((token, error, cause))
            real.send_failure(token, error, cause)

    recording = Recording()
    monkeypatch.setattr(factory, "workflow", lambda: recording)
    return sent


def customer_of(job: Any) -> str:
    return str(job.manifest["metadata"]["labels"]["upgrades.example.com/customer-id"])


def window_wait_ends(stack, job_id: str) -> list[str]:
    """How each WaitForWindows task of the execution ended, in order: the error it failed with (the abort's,
    the halt's) or States.Timeout (the opening, or the recheck, came)."""
    arn, ends, state, token = stack.runtime.execution_arn(job_id), [], None, None
    while True:
        page = stack.runtime.sfn.get_execution_history(executionArn=arn, maxResults=1000,
                                                       **({"nextToken": token} if token else {}))  # fmt: skip
        for event in page["events"]:
            if event["type"] == "TaskStateEntered":
                state = event["stateEnteredEventDetails"]["name"]
            elif state == "WaitForWindows" and event["type"] == "TaskFailed":
                ends.append(event["taskFailedEventDetails"]["error"])
            elif state == "WaitForWindows" and event["type"] == "TaskTimedOut":
                ends.append("States.Timeout")
        token = page.get("nextToken")
        if not token:
            return ends


def run_window_token(sql, job_id: str) -> str | None:
    return sql("SELECT window_token FROM upgrade_runs WHERE run_name = %s", job_id)[0]["window_token"]


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


def test_a_customer_without_a_window_starts_at_once_while_the_others_wait(stack, make_customers, sql, clock):
    """The issue's reproduction: two customers with a Saturday window, first by id, one without, maxConcurrency 2,
    on a Friday. The waiting two hold no slot: the third is upgraded at once.

    Breakage tried: the code before this change (children sleeping in WaitForWindow inside the Map): the
    third never started (0 Jobs, 3 pending), caught by the first wait_for_status."""
    ids = make_customers(3)
    for cid in ids[:2]:
        sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(BERLIN_SAT), cid)
    started = deploy(component="api", version="v2.0.0", strategy="all", maxConcurrency=2)
    uid = started["upgradeId"]
    waiting = stack.wait_for_status(uid, lambda s: s["completed"] == 1, timeout=60)
    assert [customer_of(j) for j in stack.cluster.created_jobs] == [ids[2]]
    assert [w["customerId"] for w in waiting["waitingForWindow"]] == ids[:2]
    assert {w["nextOpening"] for w in waiting["waitingForWindow"]} == {"2026-03-21T01:00:00.000Z"}
    # nothing of the waiting two runs meanwhile: no child claimed them
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs")}
    assert [(rows[c]["status"], rows[c]["started_at"]) for c in ids[:2]] == [("pending", None)] * 2

    clock.set(utc("2026-03-21T01:10:00"))  # Saturday 02:10 in Berlin
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    final = stack.status(uid)
    assert (final["status"], final["completed"], final["waitingForWindow"]) == ("completed", 3, [])
    assert stack.cluster.peak_running_jobs(uid) <= 2


def test_a_wave_of_200_with_50_closed_windows_first_runs_every_open_customer_before_any_window_opens(
    stack, make_customers, sql, clock
):  # fmt: skip
    """Fleet shape: one wave of 200, the 50 first by id with a closed window, maxConcurrency 5. The 150 open
    ones all complete while the windows stay closed; when the windows open the 50 start, within maxConcurrency.

    Breakage tried: the code before this change (children sleeping in WaitForWindow inside the Map): none of
    the 150 completed (200 pending), caught by the first wait_for_status; the Map without its
    MaxConcurrencyPath: 26 helm Jobs ran at once, caught by the first peak assertion."""
    ids = make_customers(200)
    closed, open_ = ids[:50], ids[50:]
    sql("UPDATE customers SET maintenance_window = %s WHERE id = ANY(%s)", Jsonb(BERLIN_SAT), closed)
    started = deploy(component="api", version="v2.0.0", strategy="all", maxConcurrency=5)
    uid = started["upgradeId"]
    assert started["waves"] == [200]

    done = stack.wait_for_status(uid, lambda s: s["completed"] == 150, timeout=300)
    assert sorted(customer_of(j) for j in stack.cluster.created_jobs) == open_
    assert sorted(w["customerId"] for w in done["waitingForWindow"]) == closed
    assert (done["pending"], done["inProgress"], done["failed"]) == (50, 0, 0)
    rows = sql("SELECT status, started_at, job_name FROM customer_upgrade_logs WHERE customer_id = ANY(%s)", closed)
    assert {(r["status"], r["started_at"], r["job_name"]) for r in rows} == {("pending", None, None)}
    assert stack.cluster.peak_running_jobs(uid) <= 5

    clock.set(utc("2026-03-21T01:05:00"))  # Saturday 02:05 in Berlin: the 50 windows open
    assert stack.wait_execution(started["jobId"], timeout=300)["status"] == "SUCCEEDED"
    final = stack.status(uid)
    assert (final["status"], final["completed"], final["waitingForWindow"]) == ("completed", 200, [])
    assert sorted(customer_of(j) for j in stack.cluster.created_jobs) == ids
    assert stack.cluster.peak_running_jobs(uid) <= 5


def test_a_customer_whose_window_closes_during_a_kubernetes_outage_waits_for_its_next_window(stack, make_customers,
                                                                                           sql, clock):  # fmt: skip
    """The window is decided again right before the Job: a customer that waited through a Kubernetes outage
    past the point where its upgrade fits its window goes back to waiting (no slot held), and starts in its
    next window.

    Breakage tried: the code before this change, and StartHelmJob without `_window_closed` in `_start_upgrade`
    (the decision made once, before the lease): the Job was created at 12:50 for a window that closes at 13:00
    with 20 minutes expected and the customer completed, caught by the waitingForWindow assertion."""
    (cid,) = make_customers(1)
    sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(FRIDAY_NOON), cid)
    outage = stack.cluster.unreachable(600)
    started = deploy(component="api", version="v2.0.0", strategy="all", expectedDurationMinutes=20)
    uid = started["upgradeId"]
    # claimed inside its window (Friday 12:00, open until 13:00), then waiting for the Kubernetes API
    stack.wait_for(lambda: "unreachable" in str(sql("SELECT waiting_for FROM customer_upgrade_logs")[0]["waiting_for"]))

    clock.set(utc("2026-03-20T12:50:00"))  # 20 minutes no longer fit before 13:00
    stack.cluster.end_outage(outage)
    waiting = stack.wait_for_status(uid, lambda s: len(s["waitingForWindow"]) == 1 or s["status"] != "in_progress")
    assert waiting["waitingForWindow"] == [{"customerId": cid, "nextOpening": "2026-03-27T11:00:00.000Z"}]
    assert (waiting["pending"], waiting["inProgress"]) == (1, 0)
    stack.wait_for(lambda: run_window_token(sql, started["jobId"]) is not None)  # the run waits, not the customer
    assert stack.cluster.created_jobs == []
    assert sql("SELECT count(*) AS n FROM customer_leases") == [{"n": 0}]

    clock.set(utc("2026-03-27T11:05:00"))  # its next window
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    assert (stack.status(uid)["status"], [customer_of(j) for j in stack.cluster.created_jobs]) == ("completed", [cid])


def test_abort_ends_the_runs_window_wait_at_once(stack, make_customers, sql, clock, monkeypatch, sent_failures):
    """Abort wakes window sleepers: the abort fails the run's stored WaitForWindows token itself (asserted on
    the call and on the execution's history), not the opening a day away.

    Breakage tried: `request_abort` not taking the run's token (`_take_window_tokens` left out): no
    SendTaskFailure was sent, caught by the first assertion after the abort; and the token taken but never
    sent (release_window_waits a no-op): caught the same way."""
    monkeypatch.setenv("WINDOW_RECHECK_SECONDS", "86400")  # only the abort can end the wait early
    ids = make_customers(3)  # cust_0001 has no window
    for cid in ids[1:]:
        sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(BERLIN_SAT), cid)
    started = deploy(component="api", version="v2.0.0", strategy="all", expectedDurationMinutes=20,
                     windowDeadline="2026-04-01T00:00:00Z")  # fmt: skip
    uid, name = started["upgradeId"], started["jobId"]
    stack.wait_for_status(uid, lambda s: s["completed"] == 1 and len(s["waitingForWindow"]) == 2)
    stack.wait_for(lambda: run_window_token(sql, name) is not None)
    token = run_window_token(sql, name)

    code, answer = control("abort", uid, {"reason": "bad release"})
    assert code == 202, answer
    assert sent_failures == [(token, "UpgradeAborted", answer["haltReason"])]
    assert run_window_token(sql, name) is None
    assert stack.wait_execution(name)["status"] == "SUCCEEDED"
    assert window_wait_ends(stack, name) == ["UpgradeAborted"]
    final = stack.status(uid)
    assert (final["status"], final["completed"], final["skipped"], final["waitingForWindow"]) == (
        "aborted", 1, 2, []
    )  # fmt: skip
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs")}
    assert [rows[c]["status"] for c in ids[1:]] == ["skipped", "skipped"]
    assert all("bad release" in rows[c]["error"] for c in ids[1:])
    assert [customer_of(j) for j in stack.cluster.created_jobs] == [ids[0]]


def test_a_failure_budget_halt_ends_the_runs_window_wait_at_once(stack, make_customers, sql, clock, monkeypatch,
                                                                  sent_failures):  # fmt: skip
    """A halt recorded while the run waits for windows (the reconciler settling an orphan: a customer whose
    worker could not record its failed Job) fails the run's stored WaitForWindows token at once.

    Breakage tried: `_halt` not taking the runs' tokens (the `windows` argument ignored): no SendTaskFailure,
    caught by the assertion right after the sweep."""
    monkeypatch.setenv("WINDOW_RECHECK_SECONDS", "86400")  # only the halt can end the wait early
    ids = make_customers(4)  # wave 1: cust_0001 (no window, its helm fails), cust_0002, cust_0003; wave 2: cust_0004
    for cid in ids[1:3]:
        sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(BERLIN_SAT), cid)
    stack.cluster.fail_customers.add(ids[0])
    real = orchestration.finish_customer

    def worker_gone(event: dict[str, Any], **kwargs: Any) -> Any:
        if event.get("customer", {}).get("customerId") == ids[0]:
            raise RuntimeError("the worker died before it recorded the result")
        return real(event, **kwargs)

    monkeypatch.setattr(orchestration, "finish_customer", worker_gone)
    started = deploy(component="api", version="v2.0.0", strategy="batch", batchSize=3, expectedDurationMinutes=20,
                     windowDeadline="2026-04-01T00:00:00Z")  # fmt: skip
    uid, name = started["upgradeId"], started["jobId"]
    assert started["waves"] == [3, 1]
    # cust_0001's result is left to the reconciler (its lease held); the run waits for the other two's windows
    stack.wait_for(lambda: run_window_token(sql, name) is not None)
    token = run_window_token(sql, name)
    assert [w["customerId"] for w in stack.status(uid)["waitingForWindow"]] == ids[1:3]

    invoke("reconcile_runs", {"source": "scheduler.sweep", "minAgeSeconds": 0})  # settles cust_0001: failed
    reason = "wave 1 of 2: 1 of 3 customers failed (tolerated: 0)"
    assert sent_failures == [(token, "UpgradeHalted", reason)]
    assert stack.wait_execution(name)["status"] == "SUCCEEDED"
    assert window_wait_ends(stack, name) == ["UpgradeHalted"]
    final = stack.status(uid)
    assert (final["status"], final["haltReason"], final["completed"], final["failed"], final["skipped"],
            final["waitingForWindow"]) == ("halted", reason, 0, 1, 3, [])  # fmt: skip
    rows = {r["customer_id"]: r for r in sql("SELECT * FROM customer_upgrade_logs")}
    assert [rows[c]["status"] for c in ids] == ["failed", "skipped", "skipped", "skipped"]
    assert [rows[c]["error"] for c in ids[1:]] == [f"not started: {reason}"] * 3
    # no helm Job for a waiting customer, nor for the wave that never started
    assert [customer_of(j) for j in stack.cluster.created_jobs] == [ids[0]]


def _claimed_behind_another_operation(make_customers: Any, sql: Any) -> tuple[dict[str, Any], int]:
    """One customer whose window (Friday 11:00-13:00 UTC) is open at the clock's Friday 12:00, claimed by the
    api upgrade (20 minutes expected) while a dashboard upgrade of the same customer holds its release's
    lease. The upgrades' executions are not run (fake_workflow): the test drives the steps. Returns the
    child's state after BeginCustomer and the holder's log row id."""
    (cid,) = make_customers(1)
    sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(FRIDAY_NOON), cid)
    api = deploy(component="api", version="v2.0.0", expectedDurationMinutes=20)
    dashboard = deploy(component="dashboard", version="v2.0.0", respectWindows=False)
    holder = sql("SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s", int(dashboard["upgradeId"]))[0]["id"]
    factory.runs().claim_customer(holder)
    with factory.leases().session(holder) as lease:
        assert lease.state == "acquired"
        lease.record_job(f"helm-upgrade-{holder}-{cid}")
    log_id = sql("SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s", int(api["upgradeId"]))[0]["id"]
    child = {"upgradeId": int(api["upgradeId"]), "logId": log_id, "customerId": cid, "runName": api["jobId"],
             "pollSeconds": 0, "leaseWaitSeconds": 0, "respectWindows": True}  # fmt: skip
    begun = invoke("begin_customer", child)
    assert (begun["action"], begun["status"]) == ("run", "in_progress")
    child["customer"] = begun
    waiting = invoke("start_helm_job", child)
    assert waiting["phase"] == "waiting" and "release busy" in waiting["waitingFor"]
    return child, holder


def test_a_customer_waiting_for_its_release_when_its_window_closes_goes_back_to_waiting_for_its_window(
    stack, fake_workflow, make_customers, sql, clock
):  # fmt: skip
    """It would wait for the lease and then for its window: it waits for its window, without a slot.

    Breakage tried: the code before this change, and the busy branch of StartHelmJob without
    `_window_closed`: the step answered "waiting" (for the lease) again, caught by the phase assertion."""
    child, _ = _claimed_behind_another_operation(make_customers, sql)
    clock.set(utc("2026-03-20T12:50:00"))  # 20 minutes no longer fit before 13:00

    deferred = invoke("start_helm_job", child)
    assert deferred == {"phase": "deferred", "stage": "upgrade", "waitUntil": "2026-03-27T11:00:00Z"}
    row = sql("SELECT * FROM customer_upgrade_logs WHERE id = %s", child["logId"])[0]
    assert (row["status"], row["started_at"], row["waiting_for"], row["window_opens_at"]) == (
        "pending", None, None, datetime(2026, 3, 27, 11))  # fmt: skip
    assert stack.cluster.created_jobs == []


def test_the_window_is_decided_again_under_the_lease_right_before_the_job(stack, fake_workflow, make_customers, sql,
                                                                         clock):  # fmt: skip
    """The lease comes free after the window stopped fitting: no Job; the customer waits for its next window
    (pending, no lease), and a second delivery of the step changes nothing.

    Breakage tried: the code before this change, and `_start_upgrade` without `_window_closed` (the window
    decided once, before the lease): a helm Job was started at 12:50 (phase "pending" with its jobName),
    caught by the first assertion of the loop."""
    child, holder = _claimed_behind_another_operation(make_customers, sql)
    factory.runs().finish_customer(holder, "completed", "ok", None)  # the other operation gives the release back
    clock.set(utc("2026-03-20T12:50:00"))

    for _ in range(2):  # delivered twice (a retry): deferred both times, nothing started
        deferred = invoke("start_helm_job", child)
        assert deferred == {"phase": "deferred", "stage": "upgrade", "waitUntil": "2026-03-27T11:00:00Z"}
        assert stack.cluster.created_jobs == []
        assert sql("SELECT count(*) AS n FROM customer_leases") == [{"n": 0}]
        row = sql("SELECT status, window_opens_at, job_name FROM customer_upgrade_logs WHERE id = %s", child["logId"])
        assert row == [{"status": "pending", "window_opens_at": datetime(2026, 3, 27, 11), "job_name": None}]
    status = stack.status(str(child["upgradeId"]))
    assert status["waitingForWindow"] == [
        {"customerId": child["customerId"], "nextOpening": "2026-03-27T11:00:00.000Z"}
    ]
