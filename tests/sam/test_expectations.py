"""How an answer read from `sam local invoke` is judged (upgradectl/samlocal/expectations.py, invoke.py): by the
answer, never by SAM's exit code, each mismatch naming what differs."""

from __future__ import annotations

import json

import pytest

from upgradectl.samlocal.expectations import Expect, judge
from upgradectl.samlocal.invoke import function_of, parse_answer


def http(status: int, body: dict) -> dict:
    return {"statusCode": status, "body": json.dumps(body), "isBase64Encoded": False}


def test_an_api_answer_must_have_the_status_and_the_error_named():
    """Breakages tried: the status compared as text ("503" never equals 503: every API event failed); the error
    name not compared (a 503 DatabaseUnavailable passed for a 503 WorkflowUnavailable)."""
    expect = Expect(503, error="WorkflowUnavailable")
    assert judge(http(503, {"error": "WorkflowUnavailable", "message": "Step Functions unreachable"}), expect) is None
    assert "error 'DatabaseUnavailable' (expected WorkflowUnavailable)" in str(
        judge(http(503, {"error": "DatabaseUnavailable"}), expect)
    )
    assert "statusCode 202 (expected 503)" in str(judge(http(202, {"upgradeId": "1"}), expect))


def test_a_handler_that_raised_is_a_failure_unless_that_error_is_the_expected_answer():
    """Breakage tried: an {errorType, errorMessage} answer taken as a result (SAM exits 0 when the handler raised):
    a worker that raised SettingsError passed for one that returns its state."""
    raised = {"errorType": "SettingsError", "errorMessage": "missing environment variable(s): DATABASE_URL"}
    assert "raised SettingsError" in str(judge(raised, Expect(fields={"upgradeId": 1})))
    assert "raised SettingsError" in str(judge(raised, Expect(error="UpgradeNotFound")))
    assert (
        judge({"errorType": "UpgradeNotFound", "errorMessage": "upgrade 1 not found"}, Expect(error="UpgradeNotFound"))
        is None
    )
    assert "expected the error UpgradeNotFound" in str(judge({"upgradeId": 1}, Expect(error="UpgradeNotFound")))


def test_a_field_that_differs_is_named():
    """Breakage tried: only the first expected field compared (count checked, `upgrades` not)."""
    expect = Expect(200, fields={"count": 0, "upgrades": []})
    assert judge(http(200, {"count": 0, "upgrades": []}), expect) is None
    assert judge(http(200, {"count": 0, "upgrades": [{"upgradeId": "9"}]}), expect) == (
        "upgrades is [{'upgradeId': '9'}] (expected [])"
    )


def test_the_answer_is_the_last_json_line_of_sams_output():
    """Breakage tried: the first JSON line taken (a JSON log line printed before the answer was taken instead)."""
    assert parse_answer('{"level": "INFO", "message": "x"}\n{"statusCode": 200}\n') == {"statusCode": 200}
    with pytest.raises(ValueError, match="no JSON answer"):
        parse_answer("")


def test_each_event_file_goes_to_its_function():
    """Breakage tried: the shortest matching folder (api_customers_rules_list went to a function `api`, had one
    existed); the window gate's event sent to a function named await_window (none exists)."""
    folders = ["api_customers", "api_control", "await_continue", "reconcile_runs"]
    assert function_of("api_customers_rules_list", [*folders, "api"]) == "api_customers"
    assert function_of("await_window", folders) == "await_continue"
    with pytest.raises(ValueError, match="names no function folder"):
        function_of("unknown_event", folders)
