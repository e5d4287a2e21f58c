"""The CLI's fleet commands against a fake API: customers, fleet bars, --dry-run, idempotent deploys."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from upgradectl import cli

DEPLOY = ("--component", "api", "--version", "v1.2.0", "--strategy", "all")
STARTED = {"upgradeId": "123", "jobId": "upgrade-123-ab", "strategy": "all", "total": 50, "waves": [47],
           "message": "Upgrade started for all 47 customers; 3 left out (2 already at v1.2.0, 1 pinned)",
           "status": "pending", "skipped": 3, "leftOut": {"already_at_version": 2, "pinned": 1}}  # fmt: skip


def run(fake_api: Any, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--api-url", fake_api.url, *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def query(path: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(path).query)


# --------------------------------------------------------------------------------------- deploy
def test_a_deploy_sends_an_idempotency_key_by_default(fake_api):
    fake_api.responder = lambda m, p, b: (202, STARTED)
    assert run(fake_api, *DEPLOY)[0] == 0
    key = fake_api.requests[0].headers.get("Idempotency-Key")
    assert key and re.fullmatch(r"[0-9a-f-]{36}", key)
    run(fake_api, *DEPLOY, "--idempotency-key", "release-2025-10-22")
    assert fake_api.requests[1].headers.get("Idempotency-Key") == "release-2025-10-22"


def test_a_deploy_without_an_answer_is_sent_again_with_the_same_key(fake_api, monkeypatch):
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    answers = iter([(503, {"message": "Step Functions is busy"}), (202, STARTED)])
    fake_api.responder = lambda m, p, b: next(answers)
    code, out, err = run(fake_api, *DEPLOY)
    assert code == 0 and "upgrade id 123" in out and "asking again" in err
    keys = [r.headers.get("Idempotency-Key") for r in fake_api.requests]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_a_refusal_is_not_sent_again(fake_api):
    fake_api.responder = lambda m, p, b: (409, {"message": "an upgrade of component 'api' is already pending"})
    code, _, err = run(fake_api, *DEPLOY)
    assert code == 1 and "already pending" in err and len(fake_api.requests) == 1


def test_dry_run_prints_the_plan_and_starts_nothing(fake_api):
    plan = {"message": "Canary upgrade would start for 1 customer; 2 more after /continue; 1 left out (1 pinned)",
            "waves": [{"wave": 0, "size": 1, "gate": "approval", "customers": [{"customerId": "cust_abc123"}]},
                      {"wave": 1, "size": 2, "gate": None,
                       "customers": [{"customerId": "cust_abc124"}, {"customerId": "cust_abc125"}]}],
            "leftOut": [{"customerId": "cust_abc126", "reason": "pinned", "detail": "api pinned to v1.1.0 until x"}],
            "leftOutCounts": {"pinned": 1}, "activeUpgrade": None}  # fmt: skip
    fake_api.responder = lambda m, p, b: (200, plan)
    code, out, _ = run(fake_api, "--component", "api", "--version", "v1.2.0", "--strategy", "canary",
                       "--include-pinned", "--dry-run")  # fmt: skip
    assert code == 0
    assert [(r.method, r.path) for r in fake_api.requests] == [("POST", "/api/upgrades/plan")]
    assert fake_api.requests[0].body["includePinned"] is True
    assert "wave 1 (1 customers, then wait for continue): cust_abc123" in out
    assert "wave 2 (2 customers): cust_abc124, cust_abc125" in out
    assert "cust_abc126" in out and "pinned" in out


# ------------------------------------------------------------------------------------- customers
CUSTOMER = {"customerId": "cust_abc123", "namespace": "customer-abc123", "releaseName": "customer-abc123",
            "status": "active", "labels": {"tier": "premium"}, "releaseRevision": 4, "chartVersion": "1.5.0",
            "versions": {"api": "v1.1.0", "dashboard": "v1.9.0", "exporter": "v1.0.0", "mosquitto": "2.0.18"},
            "drift": {"api": {"recorded": "v1.0.3", "release": "v1.1.0", "detectedAt": "2025-10-22T17:00:00.000Z"}},
            "pins": {"api": {"version": "v1.1.0", "reason": "freeze", "expiresAt": "2025-11-01T00:00:00.000Z",
                             "pinnedBy": "jane", "expired": False}},
            "maintenanceWindow": None, "releaseError": None}  # fmt: skip


def test_customers_list_sends_the_filters_and_prints_a_table(fake_api):
    fake_api.responder = lambda m, p, b: (200, {"count": 1, "customers": [CUSTOMER], "nextCursor": None})
    code, out, _ = run(fake_api, "customers", "list", "--component", "api", "--version", "v1.1.0",
                       "--label", "tier=premium", "--label", "region=eu", "--drift")  # fmt: skip
    assert code == 0
    sent = query(fake_api.requests[0].path)
    assert sent == {"component": ["api"], "version": ["v1.1.0"], "label": ["tier=premium,region=eu"],
                    "drift": ["true"], "limit": ["100"]}  # fmt: skip
    assert "cust_abc123" in out and "drift pinned" in out and "1 customers" in out


def test_customers_list_all_follows_every_page(fake_api):
    pages = iter([{"count": 1, "customers": [CUSTOMER], "nextCursor": "cust_abc123"},
                  {"count": 1, "customers": [{**CUSTOMER, "customerId": "cust_abc124"}], "nextCursor": None}])  # fmt: skip
    fake_api.responder = lambda m, p, b: (200, next(pages))
    code, out, _ = run(fake_api, "customers", "list", "--all")
    assert code == 0 and "cust_abc124" in out
    assert query(fake_api.requests[1].path)["cursor"] == ["cust_abc123"]


def test_customers_show_tells_drift_pins_and_history(fake_api):
    detail = {**CUSTOMER, "operations": [], "operationsTotal": 0, "historyTotal": 1,
              "history": [{"at": "2025-10-22T17:00:00.000Z", "kind": "drift", "actor": None, "syncId": "7",
                           "detail": {"components": {"api": {"recorded": "v1.0.3", "release": "v1.1.0"}}}}]}  # fmt: skip
    fake_api.responder = lambda m, p, b: (200, detail)
    code, out, _ = run(fake_api, "customers", "show", "cust_abc123")
    assert code == 0
    assert "DRIFT     api: recorded v1.0.3, the release runs v1.1.0" in out
    assert "pinned    api at v1.1.0" in out and "sync 7" in out


def test_label_pin_unpin_window_become_patches(fake_api):
    fake_api.responder = lambda m, p, b: (200, {"changes": {}, "customer": CUSTOMER})
    run(fake_api, "customers", "label", "cust_abc123", "tier=gold", "old-")
    run(fake_api, "customers", "pin", "cust_abc123", "api", "--reason", "freeze", "--days", "14")
    run(fake_api, "customers", "unpin", "cust_abc123", "api")
    run(fake_api, "customers", "window", "cust_abc123", "--timezone", "Europe/Berlin", "--days", "sat,sun",
        "--start", "02:00", "--duration", "120")  # fmt: skip
    run(fake_api, "customers", "suspend", "cust_abc123")
    run(fake_api, "customers", "ack-drift", "cust_abc123")
    assert {(r.method, r.path) for r in fake_api.requests} == {("PATCH", "/api/customers/cust_abc123")}
    bodies = [r.body for r in fake_api.requests]
    assert bodies[0] == {"labels": {"tier": "gold", "old": None}}
    pin = bodies[1]["pins"]["api"]
    expires = datetime.fromisoformat(pin["expiresAt"].replace("Z", "+00:00"))
    assert pin["reason"] == "freeze" and abs(expires - (datetime.now(UTC) + timedelta(days=14))) < timedelta(minutes=5)
    assert bodies[2:] == [
        {"pins": {"api": None}},
        {"maintenanceWindow": {"timezone": "Europe/Berlin", "days": ["sat", "sun"], "start": "02:00",
                               "durationMinutes": 120}},
        {"status": "suspended"},
        {"acknowledgeDrift": True},
    ]  # fmt: skip


def test_a_window_needs_all_its_parts(fake_api):
    code, _, err = run(fake_api, "customers", "window", "cust_abc123", "--timezone", "UTC")
    assert code == 2 and "--days, --start, --duration" in err and fake_api.requests == []


def test_customers_sync_waits_for_the_result(fake_api, monkeypatch):
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    results = iter([{"syncId": "4", "status": "running"},
                    {"syncId": "4", "status": "completed", "counts": {"added": 2}, "problems": []}])  # fmt: skip

    def respond(method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "POST":
            return 202, {"syncId": "4", "status": "pending", "message": "sync 4 started"}
        return 200, next(results)

    fake_api.responder = respond
    code, out, _ = run(fake_api, "customers", "sync", "--wait")
    assert code == 0 and "sync 4 completed" in out and "added 2" in out


def test_fleet_shows_the_version_spread_as_bars(fake_api):
    fleet = {"customers": 50, "byStatus": {"active": 50, "suspended": 0, "decommissioned": 0}, "drift": 1, "pinned": 2,
             "components": [{"component": "api", "unknown": 0, "versions": [{"version": "v1.1.0", "customers": 45},
                                                                             {"version": "v1.0.3", "customers": 5}]}],
             "lastSync": None}  # fmt: skip
    fake_api.responder = lambda m, p, b: (200, fleet)
    code, out, _ = run(fake_api, "fleet")
    assert code == 0
    lines = out.splitlines()
    assert "50 customers" in lines[0] and "drift 1" in lines[0]
    assert re.search(r"^api\s+v1\.1\.0\s+[#█]{27}[-░]{3}\s+45\s+90%$", lines[1])
    assert re.search(r"^\s+v1\.0\.3\s+[#█]{3}[-░]{27}\s+5\s+10%$", lines[2])
