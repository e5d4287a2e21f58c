"""A wave in slices: PrepareWave offers only the customers whose window is open (or who have none), records
when the others' windows open, and EvaluateWave keeps the wave open while any of them waits. Real
PostgreSQL and the domain functions of the parent steps; the manifest store is an in-memory fake."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg.types.json import Jsonb
from upgrader import factory
from upgrader.rollout import orchestration
from upgrader.rollout.windows import check_window

from tests.api.helpers import deploy

BERLIN_SAT = {"timezone": "Europe/Berlin", "days": ["sat"], "start": "02:00", "durationMinutes": 120}
FRIDAY_NOON = {"timezone": "UTC", "days": ["fri"], "start": "11:00", "durationMinutes": 120}
FRIDAY = datetime(2026, 3, 20, 12, tzinfo=UTC)
SATURDAY = datetime(2026, 3, 21, 1, 5, tzinfo=UTC)  # 02:05 in Berlin


class Manifests:
    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:  # noqa: N803
        self.objects[Key] = json.loads(Body)


class Clock:
    def now(self) -> datetime:
        return FRIDAY


@pytest.fixture
def run(make_customers, sql, fake_workflow, monkeypatch) -> dict[str, Any]:
    """Five customers on a Friday: 1 without a window, 2 and 5 with a Saturday window, 3 with Friday's (open),
    4 without; the upgrade respects windows. Returns PrepareRun's output."""
    monkeypatch.setattr(factory, "clock", Clock)
    make_customers(5)
    for cid, window in (("cust_0002", BERLIN_SAT), ("cust_0003", FRIDAY_NOON), ("cust_0005", BERLIN_SAT)):
        sql("UPDATE customers SET maintenance_window = %s WHERE id = %s", Jsonb(window), cid)
    started = deploy(windowDeadline="2026-04-01T00:00:00Z")
    payload = {"upgradeId": int(started["upgradeId"]), "runName": started["jobId"], "operation": "upgrade"}
    state = orchestration.prepare_run(payload, runs=factory.runs())
    assert state["respectWindows"] is True and state["slice"] == 0
    return state


def _prepare(state: dict[str, Any], manifests: Manifests, now: datetime) -> dict[str, Any]:
    return orchestration.prepare_wave(state, runs=factory.runs(), s3=manifests, bucket="b", windows=factory.windows(),
                                      now=now, recheck=86_400)  # fmt: skip


def _ids(sql: Any) -> dict[str, int]:
    return {r["customer_id"]: r["id"] for r in sql("SELECT id, customer_id FROM customer_upgrade_logs")}


def _finish(sql: Any, *customers: str) -> None:
    runs = factory.runs()
    for customer in customers:
        runs.claim_customer(_ids(sql)[customer])
        runs.finish_customer(_ids(sql)[customer], "completed", "ok", None)


def test_a_wave_runs_in_slices_as_windows_open(run, sql):
    """Breakage tried: the first slice offering every pending customer (no window decision): caught by the
    manifest assertion; later slices offering every pending customer of the wave (the `window_opens_at`
    condition dropped): cust_0004, left pending by a child that recorded nothing, was offered again, caught
    by the second slice's manifest; EvaluateWave judging the wave over while customers wait: caught by the
    decision and the Wave Finished assertions."""
    manifests = Manifests()
    key = f"{run['manifestPrefix']}/wave-0.json"
    first = _prepare(run, manifests, FRIDAY)
    assert [i["customerId"] for i in manifests.objects[key]] == ["cust_0001", "cust_0003", "cust_0004"]
    assert (first["slice"], first["sliceSize"], first["windowWaits"]) == (0, 3, 2)
    assert (first["nextOpening"], first["windowWaitSeconds"]) == ("2026-03-21T01:00:00Z", 13 * 3600)
    opens = {r["customer_id"]: r["window_opens_at"] for r in sql("SELECT * FROM customer_upgrade_logs")}
    assert opens == {"cust_0001": None, "cust_0002": datetime(2026, 3, 21, 1), "cust_0003": None, "cust_0004": None,
                     "cust_0005": datetime(2026, 3, 21, 1)}  # fmt: skip

    # the slice's children: 1 and 3 completed; 4's child never recorded anything (it stays pending)
    _finish(sql, "cust_0001", "cust_0003")
    judged = orchestration.evaluate_wave(first, runs=factory.runs(), windows=factory.windows())
    assert (judged["decision"], judged["slice"], judged["wave"]) == ("slice", 1, 0)
    assert sql("SELECT event_key FROM event_outbox WHERE event_key LIKE 'wave-finished:%%'") == []

    # nobody ready yet: the run waits until Saturday's opening
    manifests.objects.clear()
    waiting = _prepare(judged, manifests, FRIDAY)
    assert (waiting["sliceSize"], waiting["windowWaits"], waiting["nextOpening"]) == (0, 2, "2026-03-21T01:00:00Z")
    assert manifests.objects == {}

    # the windows open: the next slice holds the two that waited, and nobody else
    opened = _prepare(judged, manifests, SATURDAY)
    assert [i["customerId"] for i in manifests.objects[key]] == ["cust_0002", "cust_0005"]
    assert (opened["sliceSize"], opened["windowWaits"], opened["nextOpening"]) == (2, 0, None)
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs WHERE window_opens_at IS NOT NULL") == [{"n": 0}]

    _finish(sql, "cust_0002", "cust_0005")
    over = orchestration.evaluate_wave(opened, runs=factory.runs(), windows=factory.windows())
    assert over["decision"] == "done"
    assert over["lastWave"] == {"wave": 0, "size": 5, "completed": 4, "failed": 0, "skipped": 0, "unrecorded": 0}
    assert len(sql("SELECT event_key FROM event_outbox WHERE event_key LIKE 'wave-finished:%%'")) == 1


def test_a_window_that_no_longer_fits_before_the_deadline_is_skipped_at_the_next_slice(run, sql):
    manifests = Manifests()
    _prepare(run, manifests, FRIDAY)
    sql('UPDATE system_upgrades SET parameters = parameters || \'{"windowDeadline": "2026-03-21T00:00:00Z"}\'')
    later = _prepare({**run, "slice": 1}, manifests, FRIDAY)
    assert (later["sliceSize"], later["windowWaits"]) == (0, 0)
    skipped = sql("SELECT customer_id, status, error FROM customer_upgrade_logs WHERE status = 'skipped' ORDER BY id")
    assert [r["customer_id"] for r in skipped] == ["cust_0002", "cust_0005"]
    assert all("before the deadline 2026-03-21T00:00:00.000Z" in r["error"] for r in skipped)


def test_a_stopped_run_starts_nobody_and_waits_for_nothing(run, sql):
    """Breakage tried: prepare_slice without the stop check: the halted run's next slice still offered the
    waiting customers whose window opened, caught by the manifest assertion."""
    manifests = Manifests()
    _prepare(run, manifests, FRIDAY)
    factory.runs().halt(int(run["upgradeId"]), "halted by a test")
    manifests.objects.clear()
    stopped = _prepare({**run, "slice": 1}, manifests, SATURDAY)
    assert (stopped["sliceSize"], stopped["windowWaits"], manifests.objects) == (0, 0, {})
    judged = orchestration.evaluate_wave(stopped, runs=factory.runs(), windows=factory.windows())
    assert judged["decision"] == "halt"
    # the wave is over after all: its event, with the waiting customers still pending (skipped at the run's end)
    assert len(sql("SELECT event_key FROM event_outbox WHERE event_key LIKE 'wave-finished:%%'")) == 1


def test_a_run_waiting_for_windows_is_not_a_run_without_progress(run, sql):
    """Breakage tried: `runs_without_progress` without the `window_token` condition: the waiting run was
    counted (the NoProgress alarm would fire on every weekend window), caught by the first assertion."""
    from upgrader.notifications import metrics

    invoke_wait = orchestration.await_window(
        {"upgradeId": run["upgradeId"], "runName": run["runName"], "wave": 0, "taskToken": "t", "gate": "window"},
        windows=factory.windows(),
    )
    assert invoke_wait == {"waiting": True, "gate": "window"}
    sql("UPDATE upgrade_runs SET updated_at = NOW() - interval '2 hours'")
    sql("UPDATE system_upgrades SET updated_at = NOW() - interval '2 hours'")
    sql("UPDATE customer_upgrade_logs SET updated_at = NOW() - interval '2 hours'")
    assert metrics.runs_without_progress(factory.database(), 30) == {}
    sql("UPDATE upgrade_runs SET window_token = NULL")  # the same run, not waiting: it is stuck
    assert metrics.runs_without_progress(factory.database(), 30) == {"api": 1}


def test_a_customer_whose_window_closed_while_queued_is_deferred_before_its_claim(run, sql):
    """The Map may queue a child behind maxConcurrency: BeginCustomer decides again before claiming, so a
    customer whose window closed meanwhile is neither claimed nor told of an upcoming change.

    Breakage tried: begin_customer without its window check: the row was claimed (in_progress) and told
    "Upcoming", caught by the answer's assertion."""
    log_id = _ids(sql)["cust_0002"]  # its Saturday window is closed on the clock's Friday
    event = {"upgradeId": run["upgradeId"], "logId": log_id, "runName": run["runName"], "respectWindows": True}
    begun = orchestration.begin_customer(event, runs=factory.runs(), windows=factory.windows(), now=FRIDAY)
    assert begun == {"action": "done", "status": "pending", "customerId": "cust_0002",
                     "deferredUntil": "2026-03-21T01:00:00Z"}  # fmt: skip
    row = sql("SELECT status, started_at, window_opens_at FROM customer_upgrade_logs WHERE id = %s", log_id)[0]
    assert row == {"status": "pending", "started_at": None, "window_opens_at": datetime(2026, 3, 21, 1)}
    assert sql("SELECT event_key FROM event_outbox WHERE event_key = %s", f"notice-upcoming:{log_id}") == []


def test_a_queued_customer_whose_window_no_longer_fits_before_the_deadline_is_skipped_with_why(run, sql):
    """BeginCustomer decides again before the claim: a window that does not open before the deadline any
    more skips the customer there, with the reason on its row and in the answer.

    Kills the mutants of `rollout/windows.py:332` (`f"not started: {reason}"` → `"XX...XX"`), `:363`
    (`decision.action == "skip"` → `"XXskipXX"`), `:364` (`row["id"]` → `row["XXidXX"]`) and `:365` (each
    key and value of the answer renamed)."""
    log_id = _ids(sql)["cust_0002"]
    tuesday = datetime(2026, 3, 31, 12, tzinfo=UTC)  # the last Saturday window before the deadline is over
    event = {"upgradeId": run["upgradeId"], "logId": log_id, "runName": run["runName"], "respectWindows": True}
    begun = orchestration.begin_customer(event, runs=factory.runs(), windows=factory.windows(), now=tuesday)
    reason = ("maintenance window (sat 02:00 Europe/Berlin for 120 min) does not open with 15 min to spare before"
              " the deadline 2026-04-01T00:00:00.000Z; next fitting start 2026-04-04T00:00:00.000Z")  # fmt: skip
    assert begun == {"action": "done", "status": "skipped", "customerId": "cust_0002", "reason": reason}
    row = sql("SELECT status, error, window_opens_at FROM customer_upgrade_logs WHERE id = %s", log_id)[0]
    assert row == {"status": "skipped", "error": f"not started: {reason}", "window_opens_at": None}


def test_a_customer_whose_window_has_opened_no_longer_shows_as_waiting_before_its_claim(run, sql):
    """A customer deferred to its window's opening, asked again once it is open: it goes on to its claim,
    and its recorded opening is cleared first (the status no longer lists it as waiting).

    Kills the mutants of `rollout/windows.py:370` (`row["window_opens_at"] is not None` → `is None`, and
    → `row["XXwindow_opens_atXX"]`) and `:371` (`row["id"]` → `row["XXidXX"]`)."""
    log_id = _ids(sql)["cust_0002"]
    windows = factory.windows()
    assert check_window({"logId": log_id}, windows=windows, now=FRIDAY) == {
        "action": "done", "status": "pending", "customerId": "cust_0002", "deferredUntil": "2026-03-21T01:00:00Z"
    }  # fmt: skip
    assert [r.customer_id for r in windows.waiting(run["upgradeId"])] == ["cust_0002"]

    assert check_window({"logId": log_id}, windows=windows, now=SATURDAY) is None  # open: go on and claim it
    row = sql("SELECT status, window_opens_at FROM customer_upgrade_logs WHERE id = %s", log_id)[0]
    assert row == {"status": "pending", "window_opens_at": None}
    assert windows.waiting(run["upgradeId"]) == []


def test_the_status_lists_the_first_hundred_customers_waiting_for_their_windows_earliest_first(
    make_customers, sql, fake_workflow
):  # fmt: skip
    """Kills the mutant of `rollout/windows.py:335` (`limit: int = 100` → `101`): the list of waiting
    customers the status shows is capped at 100, the earliest openings first."""
    make_customers(101)
    uid = int(deploy(respectWindows=True)["upgradeId"])
    sql("UPDATE customer_upgrade_logs SET window_opens_at = TIMESTAMP '2026-03-21 01:00' + id * INTERVAL '1 minute'"
        " WHERE upgrade_id = %s", uid)  # fmt: skip
    waiting = factory.windows().waiting(uid)
    assert len(waiting) == 100
    assert [w.customer_id for w in waiting] == [f"cust_{n:04d}" for n in range(1, 101)]
