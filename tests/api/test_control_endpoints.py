from __future__ import annotations

import concurrent.futures

from tests.api.helpers import continue_, control, deploy, logs, rollback, status
from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke


def _await_continue(sql, uid: str, token: str = "token-abc") -> None:
    sql("UPDATE system_upgrades SET status='awaiting_continue', task_token=%s WHERE id=%s", token, int(uid))


def test_continue_releases_the_gate_once(make_customers, fake_workflow, sql):
    make_customers(10)
    upgrade = deploy(strategy="canary", canaryPercent=10)
    uid = upgrade["upgradeId"]
    _await_continue(sql, uid)
    assert status(uid)[1]["continuedBy"] is None
    code, data = continue_(uid)
    assert code == 200
    assert data == {"message": "Upgrade continuation queued", "upgradeId": uid, "jobId": upgrade["jobId"]}
    assert [token for token, _ in fake_workflow.continued] == ["token-abc"]
    released = status(uid)[1]
    assert released["status"] == "in_progress"
    # who released the gate, and when (the console shows it)
    assert released["continuedBy"] == fake_workflow.continued[0][1]["continuedBy"] != "unknown"
    assert released["continuedAt"] is not None
    # a second continue is a 409 and never a second callback
    code, again = continue_(uid)
    assert code == 409 and "not awaiting continue" in again["message"]
    assert len(fake_workflow.continued) == 1


def test_a_continue_with_a_body_of_the_wrong_json_type_is_a_400_and_the_gate_stays_closed(
    make_customers, fake_workflow, sql, database_url
):
    """Issue 27, defect 7: `[{"x": 1}]` sent to /continue (a route that takes no body) released the gate.
    Breakage tried: JsonObjectBodyValidation.handler without its `_refuse_any_body` call (main's
    behaviour: Powertools never looks at the body of a route without one): 200, the gate released."""
    make_customers(10)
    uid = deploy(strategy="canary", canaryPercent=10)["upgradeId"]
    _await_continue(sql, uid)
    before = snapshot(database_url)

    def send(raw: str) -> tuple[int, dict]:
        event = api_event("api_control_continue", path=f"/api/upgrades/{uid}/continue",
                          path_params={"upgradeId": uid}, raw_body=raw)  # fmt: skip
        response = invoke("api_control", event)
        return response["statusCode"], body(response)

    for raw, kind in (('[{"x": 1}]', "a list"), ("[]", "a list"), ("null", "null"), ('"go"', "a string"),
                      ("1", "a number"), ("true", "a boolean")):  # fmt: skip
        code, answer = send(raw)
        assert code == 400, (raw, answer)
        assert answer["errors"] == [{"field": "body", "message": f"the request body must be a JSON object, not {kind}",
                                     "type": "model_type"}]  # fmt: skip
    # nothing changed: the gate still waits, no callback was sent
    assert snapshot(database_url) == before and fake_workflow.continued == []
    # a field in an object body is named (the route takes none); an empty object is no body
    code, answer = send('{"force": true}')
    assert (code, answer["errors"][0]["field"]) == (422, "force") and fake_workflow.continued == []
    assert send("{}")[0] == 200 and len(fake_workflow.continued) == 1


def test_concurrent_continues_send_one_callback(make_customers, fake_workflow, sql):
    make_customers(10)
    uid = deploy(strategy="canary")["upgradeId"]
    _await_continue(sql, uid)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(lambda i: continue_(uid, instance=i)[0], range(8)))
    assert codes == [200] + [409] * 7
    assert len(fake_workflow.continued) == 1


def test_continue_before_the_gate_is_409(make_customers, fake_workflow):
    make_customers(3)
    uid = deploy(strategy="canary")["upgradeId"]
    code, data = continue_(uid)
    assert code == 409 and "pending" in data["message"]
    assert fake_workflow.continued == []


def test_continue_unknown_upgrade_is_404(env, fake_workflow):
    assert continue_("5555")[0] == 404


def test_rollback_of_an_upgraded_customer_is_recorded_and_started(make_customers, fake_workflow, sql):
    make_customers(3)
    uid = deploy()["upgradeId"]
    sql("UPDATE customer_upgrade_logs SET status='completed' WHERE customer_id='cust_0002'")
    code, data = rollback(uid, "cust_0002")
    assert code == 202, data
    assert data["customerId"] == "cust_0002" and data["namespace"] == "customer-0002"
    assert data["message"] and data["toVersion"] == "v1.1.0" and data["status"] == "pending"
    assert fake_workflow.started[-1][1] == {"upgradeId": int(uid), "runName": data["jobId"], "operation": "rollback"}
    code, rows = logs(uid, operation="rollback")
    assert [(r["customer_id"], r["from_version"], r["to_version"]) for r in rows["logs"]] == [
        ("cust_0002", "v1.2.0", "v1.1.0")
    ]
    # a second request while the first is open is 409
    assert rollback(uid, "cust_0002")[0] == 409


def test_rollback_refusals(make_customers, fake_workflow, sql):
    make_customers(3)
    uid = deploy()["upgradeId"]
    code, data = rollback(uid, "cust_0001")  # still pending
    assert code == 409 and "still pending" in data["message"]
    sql("UPDATE customer_upgrade_logs SET status='in_progress' WHERE customer_id='cust_0001'")
    assert rollback(uid, "cust_0001")[0] == 409
    sql("UPDATE customer_upgrade_logs SET status='failed' WHERE customer_id='cust_0003'")
    code, data = rollback(uid, "cust_0003")
    assert code == 409 and "nothing to roll back" in data["message"]
    code, data = rollback(uid, "cust_9999")
    assert code == 404 and "not part of upgrade" in data["message"]
    assert rollback("777", "cust_0001")[0] == 404
    assert len(fake_workflow.started) == 1  # only the deploy


def test_abort_records_who_and_why_once(make_customers, fake_workflow, sql):
    make_customers(3)
    uid = deploy()["upgradeId"]
    code, data = control("abort", uid, {"reason": "pager went off"})
    assert code == 202 and data["rollback"] is False
    assert (
        data["haltReason"] == "aborted by arn:aws:sts::123456789012:assumed-role/PlatformOperator/jane: pager went off"
    )
    row = sql("SELECT halt_reason, parameters FROM system_upgrades")[0]
    assert row["halt_reason"] == data["haltReason"] and row["parameters"]["abortRollback"] is False
    assert control("abort", uid)[0] == 409
    assert fake_workflow.failed_tokens == []  # no gate was open


def test_abort_at_the_gate_fails_the_token_once(make_customers, fake_workflow, sql):
    make_customers(10)
    uid = deploy(strategy="canary")["upgradeId"]
    _await_continue(sql, uid, "gate-token")
    assert control("abort", uid, {"rollback": True})[0] == 202
    assert [(t, e) for t, e, _ in fake_workflow.failed_tokens] == [("gate-token", "UpgradeAborted")]
    assert continue_(uid)[0] == 409
    assert sql("SELECT task_token FROM system_upgrades")[0]["task_token"] is None


def test_abort_of_a_finished_upgrade_is_409_and_unknown_is_404(make_customers, fake_workflow, sql):
    make_customers(2)
    uid = deploy()["upgradeId"]
    sql("UPDATE system_upgrades SET status = 'completed'")
    code, data = control("abort", uid)
    assert code == 409 and "completed" in data["message"]
    assert control("abort", "8888")[0] == 404


def test_rollback_of_whole_upgrade(make_customers, fake_workflow, sql):
    make_customers(4)
    uid = deploy(strategy="batch", batchSize=2)["upgradeId"]
    code, data = control("rollback", uid)
    assert code == 409 and "abort it" in data["message"]
    sql("UPDATE system_upgrades SET status = 'completed_with_failures'")
    sql("UPDATE customer_upgrade_logs SET status = 'completed' WHERE customer_id <> 'cust_0004'")
    sql("UPDATE customer_upgrade_logs SET status = 'failed' WHERE customer_id = 'cust_0004'")
    code, data = control("rollback", uid, {"maxConcurrency": 2})
    assert code == 202 and data["customers"] == 3 and data["waves"] == [1, 2]
    name, payload = fake_workflow.started[-1]
    assert name == data["jobId"] and payload["operation"] == "rollback" and payload["maxConcurrency"] == 2
    rows = sql(
        "SELECT customer_id, wave FROM customer_upgrade_logs WHERE operation = 'rollback' ORDER BY wave, customer_id"
    )
    assert [(r["customer_id"], r["wave"]) for r in rows] == [("cust_0003", 0), ("cust_0001", 1), ("cust_0002", 1)]
    code, data = control("rollback", uid)
    assert code == 409 and "no changed customer left" in data["message"]


def test_rollback_of_whole_upgrade_undone_when_start_fails(make_customers, fake_workflow, sql):
    make_customers(2)
    uid = deploy()["upgradeId"]
    sql("UPDATE system_upgrades SET status = 'completed'")
    sql("UPDATE customer_upgrade_logs SET status = 'completed'")
    fake_workflow.fail_start = True
    assert control("rollback", uid)[0] == 503
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs WHERE operation = 'rollback'")[0]["n"] == 0


def test_rollback_of_one_customer_undone_when_start_fails(make_customers, fake_workflow, sql):
    make_customers(2)
    uid = deploy()["upgradeId"]
    sql("UPDATE customer_upgrade_logs SET status = 'completed'")
    fake_workflow.fail_start = True
    assert rollback(uid, "cust_0001")[0] == 503
    assert sql("SELECT count(*) AS n FROM customer_upgrade_logs WHERE operation = 'rollback'")[0]["n"] == 0
    fake_workflow.fail_start = False
    assert rollback(uid, "cust_0001")[0] == 202  # nothing left behind blocks a new request
