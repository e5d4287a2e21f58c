"""The CLI's policy flags against a fake API: --skip-incompatible, --blue-green, rollback --force, rules."""

from __future__ import annotations

import io
from typing import Any

from upgradectl import cli

DEPLOY = ("--component", "api", "--version", "v2.0.0", "--strategy", "all")
STARTED = {"upgradeId": "7", "jobId": "upgrade-7-ab", "strategy": "all", "total": 3, "waves": [2],
           "message": "Upgrade started for all 2 customers", "status": "pending", "skipped": 1,
           "leftOut": {"incompatible": 1}}  # fmt: skip


def run(fake_api: Any, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--api-url", fake_api.url, *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def sent(fake_api: Any, index: int = 0) -> Any:
    return fake_api.requests[index].body


def test_skip_incompatible_is_sent_with_the_deploy(fake_api):
    fake_api.responder = lambda m, p, b: (202, STARTED)
    assert run(fake_api, *DEPLOY, "--skip-incompatible")[0] == 0
    assert sent(fake_api)["skipIncompatible"] is True
    assert run(fake_api, *DEPLOY)[0] == 0
    assert "skipIncompatible" not in sent(fake_api, 1)


def test_blue_green_is_sent_with_the_deploy(fake_api):
    fake_api.responder = lambda m, p, b: (202, STARTED)
    assert run(fake_api, *DEPLOY, "--blue-green")[0] == 0
    assert sent(fake_api)["blueGreen"] is True and "finalizeOldSlot" not in sent(fake_api)
    assert run(fake_api, *DEPLOY)[0] == 0
    assert "blueGreen" not in sent(fake_api, 1)
    assert run(fake_api, *DEPLOY, "--blue-green", "--finalize-old-slot")[0] == 0
    assert (sent(fake_api, 2)["blueGreen"], sent(fake_api, 2)["finalizeOldSlot"]) == (True, True)


def test_a_refused_deploy_prints_the_rule(fake_api):
    fake_api.responder = lambda m, p, b: (422, {"error": "IncompatibleVersions", "message": "api v2.0.0 would break "
                                                "compatibility rules for 1 customer(s): cust_1: ...", "incompatible": []})  # fmt: skip
    code, _, err = run(fake_api, *DEPLOY)
    assert code == 1 and "would break compatibility rules" in err and "HTTP 422" in err


def test_rollback_force_is_sent(fake_api):
    fake_api.responder = lambda m, p, b: (202, {"message": "Rollback started", "customerId": "cust_1",
                                                "namespace": "customer-1", "jobId": "j", "toVersion": "v1.1.0"})  # fmt: skip
    assert run(fake_api, "rollback", "7", "cust_1", "--force")[0] == 0
    assert sent(fake_api) == {"force": True}
    fake_api.responder = lambda m, p, b: (202, {"message": "Rollback of 2 customers started", "jobId": "j",
                                                "waves": [2], "customers": 2, "leftOut": []})  # fmt: skip
    assert run(fake_api, "rollback", "7", "--all", "--force")[0] == 0
    assert sent(fake_api, 1) == {"force": True}


def test_rules_are_added_listed_and_deleted(fake_api):
    rule = {"ruleId": "1", "description": "rule 1: dashboard >=2.0 requires api >=1.2", "createdBy": "me",
            "createdAt": "2026-11-29T00:00:00.000Z"}  # fmt: skip
    fake_api.responder = lambda m, p, b: (201, rule)
    code, out, err = run(
        fake_api, "rules", "add", "dashboard", ">=2.0", "--requires", "api", ">=1.2", "--reason", "auth"
    )
    assert code == 0, err
    assert "rule 1: dashboard >=2.0 requires api >=1.2" in out
    assert sent(fake_api) == {"component": "dashboard", "versions": ">=2.0",
                              "requires": {"component": "api", "versions": ">=1.2"}, "reason": "auth"}  # fmt: skip
    run(fake_api, "rules", "add", "api", "==2.*", "--upgrade-from", ">=1.4")
    assert sent(fake_api, 1) == {"component": "api", "versions": "==2.*", "upgradeFrom": ">=1.4"}
    fake_api.responder = lambda m, p, b: (200, {"count": 1, "rules": [rule]})
    code, out, _ = run(fake_api, "rules", "list")
    assert code == 0 and "requires api >=1.2" in out
    fake_api.responder = lambda m, p, b: (200, {"message": "compatibility rule 1 deleted", "ruleId": "1"})
    code, out, _ = run(fake_api, "rules", "delete", "1")
    assert code == 0 and "deleted" in out
    assert [(r.method, r.path) for r in fake_api.requests[2:]] == [
        ("GET", "/api/compatibility-rules"), ("DELETE", "/api/compatibility-rules/1")
    ]  # fmt: skip


def test_progressive_steps_set_the_strategy(fake_api):
    fake_api.responder = lambda m, p, b: (202, {**STARTED, "strategy": "progressive", "waves": [1, 4, 20, 75]})
    code, out, err = run(fake_api, "--component", "api", "--version", "v2.0.0", "--progressive", "1,5,25,100")
    assert code == 0, err
    assert sent(fake_api) == {"component": "api", "version": "v2.0.0", "strategy": "progressive",
                              "steps": [1, 5, 25, 100]}  # fmt: skip
    assert "upgrade-customers continue 7" in out
    run(fake_api, *DEPLOY[:4], "--progression", "linear", "--step-gate", "bake", "--bake-seconds", "600")
    assert sent(fake_api, 1) == {"component": "api", "version": "v2.0.0", "strategy": "progressive",
                                 "progression": "linear", "stepGate": "bake", "bakeSeconds": 600}  # fmt: skip


def test_progressive_steps_must_be_numbers(fake_api, capsys):
    code, _, err = run(fake_api, *DEPLOY[:4], "--progressive", "1,five,100")
    assert code == 2 and "whole percentages" in err + capsys.readouterr().err and not fake_api.requests


def test_window_flags_are_sent_and_waiting_customers_shown(fake_api):
    fake_api.responder = lambda m, p, b: (202, STARTED)
    run(fake_api, *DEPLOY, "--window-deadline", "2026-12-24T00:00:00Z", "--expected-minutes", "30")
    assert (sent(fake_api)["windowDeadline"], sent(fake_api)["expectedDurationMinutes"]) == ("2026-12-24T00:00:00Z", 30)
    run(fake_api, *DEPLOY, "--ignore-windows")
    assert sent(fake_api, 1)["respectWindows"] is False
    status = {"upgradeId": "7", "status": "in_progress", "waitingForWindow": [
        {"customerId": "cust_abc124", "nextOpening": "2026-12-05T01:00:00.000Z"}]}  # fmt: skip
    fake_api.responder = lambda m, p, b: (200, status)
    code, out, _ = run(fake_api, "status", "7")
    assert code == 0 and "1 waiting for their maintenance window: cust_abc124 at 2026-12-05T01:00:00.000Z" in out
