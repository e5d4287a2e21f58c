# mypy: disable-error-code="arg-type"
# (a fake cluster in place of the ClusterGateway port: it has only what check_helm_job and the sweep call)
"""Helm's output (issue 29 item 4): redacted with the release's secrets and the credential patterns, written
to PostgreSQL by the worker that read the Job (never returned into Step Functions state), summarised
without NOTES for the viewer, in full behind its own route, and deleted after the retention."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader import factory
from upgrader.cluster.types import JobState, ReleaseInfo
from upgrader.rollout import orchestration, reconciliation

from tests.api.helpers import call, deploy, logs

PASSWORD = "s3cr3t-Db-Pa55"  # noqa: S105 - a test's fake credential
API_TOKEN = "tok_9f8e7d6c5b4a"  # noqa: S105
OUTPUT = f"""Release "customer-0001" has been upgraded. Happy Helming!
NAME: customer-0001
NAMESPACE: customer-0001
STATUS: deployed
REVISION: 4
TEST SUITE: None
NOTES:
Your database password is {PASSWORD}
Connect with postgres://admin:{PASSWORD}@db.customer-0001:5432/app
export API_TOKEN={API_TOKEN}
"""


class FinishedJobCluster:
    """A cluster whose Job has finished with `output`, and whose release holds PASSWORD in a Secret."""

    def __init__(self, phase: str = "succeeded", output: str = OUTPUT, error: str | None = None) -> None:
        self.state = JobState(name="helm-upgrade-1-cust-0001-abcdef12-a1", phase=phase, output=output,  # type: ignore[arg-type]
                              error=error, seconds=12.0)  # fmt: skip

    def job_name(self, spec: Any) -> str:
        return self.state.name

    def get_helm_job(self, spec: Any) -> JobState:
        return self.state

    def get_helm_job_named(self, name: str) -> JobState:
        return self.state

    def release_status(self, namespace: str, release: str) -> ReleaseInfo:
        return ReleaseInfo(release, namespace, "deployed", 4, 4, chart_version="1.4.0",
                           versions={"api": "v1.2.0"}, secrets=frozenset({PASSWORD}))  # fmt: skip


def _started(sql: Any, make_customers: Any) -> tuple[int, dict[str, Any]]:
    make_customers(1)
    uid = int(deploy()["upgradeId"])
    row = sql("SELECT id, run_name FROM customer_upgrade_logs WHERE upgrade_id = %s", uid)[0]
    customer = orchestration.begin_customer({"logId": row["id"], "upgradeId": uid}, runs=factory.runs())
    job = {"jobName": FinishedJobCluster().state.name, "stage": "upgrade", "phase": "running"}
    return uid, {"upgradeId": uid, "logId": row["id"], "runName": row["run_name"], "customer": customer, "job": job}


def test_the_worker_stores_the_redacted_output_and_returns_none_of_it(make_customers, fake_workflow, sql):
    """Breakage tried: check_helm_job putting state.output into its result (as before the fix): the first
    assertion fails; Redactor() without the release's secrets: the password stays in the stored output."""
    uid, event = _started(sql, make_customers)

    result = orchestration.check_helm_job(event, cluster=FinishedJobCluster(), outputs=factory.helm_outputs())

    # Then nothing of the output travels in the state machine's state
    assert "output" not in result and PASSWORD not in str(result) and API_TOKEN not in str(result)
    assert result["phase"] == "succeeded"
    # and the full output is stored, redacted: the release's secret, the URL's password, the token pair
    (stored,) = sql("SELECT job_name, stage, phase, output FROM helm_outputs WHERE log_id = %s", event["logId"])
    assert (stored["stage"], stored["phase"]) == ("upgrade", "succeeded")
    assert PASSWORD not in stored["output"] and API_TOKEN not in stored["output"]
    assert "Your database password is [redacted]" in stored["output"]
    assert "postgres://admin:[redacted]@db.customer-0001:5432/app" in stored["output"]
    assert "export API_TOKEN=[redacted]" in stored["output"]
    # and the viewer's log row holds helm's summary without the NOTES
    (row,) = sql("SELECT output FROM customer_upgrade_logs WHERE id = %s", event["logId"])
    assert "has been upgraded" in row["output"] and "REVISION: 4" in row["output"]
    assert "database" not in row["output"] and "NOTES: 3 lines, in the full output" in row["output"]

    # When the worker is run again (a Step Functions retry), nothing is recorded twice
    orchestration.check_helm_job(event, cluster=FinishedJobCluster(), outputs=factory.helm_outputs())
    assert len(sql("SELECT 1 FROM helm_outputs WHERE log_id = %s", event["logId"])) == 1
    (again,) = sql("SELECT output FROM customer_upgrade_logs WHERE id = %s", event["logId"])
    assert again["output"] == row["output"]


def test_a_failed_jobs_error_is_redacted_in_the_state_the_row_and_the_events(make_customers, fake_workflow, sql):
    """Breakage tried: result["error"] = state.error (no redactor): the state, the row's error and the
    Customer Upgrade Failed event carry the password."""
    uid, event = _started(sql, make_customers)
    error = f'Error: UPGRADE FAILED: admission webhook denied: password="{PASSWORD}" is too weak'
    cluster = FinishedJobCluster(phase="failed", output=f"{error}\n", error=error)

    looked = orchestration.check_helm_job(event, cluster=cluster, outputs=factory.helm_outputs())
    orchestration.finish_customer({**event, "job": looked}, runs=factory.runs())

    assert PASSWORD not in str(looked) and 'password="[redacted]" is too weak' in looked["error"]
    (row,) = sql("SELECT status, error, output FROM customer_upgrade_logs WHERE id = %s", event["logId"])
    assert row["status"] == "failed" and PASSWORD not in row["error"] and PASSWORD not in (row["output"] or "")
    failed = [e for e in factory.outbox().events(upgrade_id=uid) if e.detail_type == "Customer Upgrade Failed"]
    assert failed and PASSWORD not in str(failed[0].payload())
    assert "[redacted]" in failed[0].payload()["customer"]["error"]


def test_an_event_quoting_a_credential_leaves_the_outbox_redacted(make_customers, fake_workflow, sql):
    """Whatever put it in a row (here a Catch's cause recorded by finish_customer), no channel gets it.

    Breakage tried: RunRepository.finish_customer without redact(): the row's error carries the token
    (alone, the outbox still redacts it: see the next test); with OutboxEvent.from_row's redaction gone
    as well, the events carry it too."""
    uid, event = _started(sql, make_customers)
    cause = f'{{"errorMessage": "create job: HTTP 422: token={API_TOKEN} refused"}}'
    orchestration.finish_customer({**event, "failure": {"Error": "ClusterPermanentError", "Cause": cause}},
                                  runs=factory.runs())  # fmt: skip
    events = [e for e in factory.outbox().events(upgrade_id=uid) if e.customer_id == "cust_0001"]
    assert events and all(API_TOKEN not in str(e.envelope()) for e in events)
    (row,) = sql("SELECT error FROM customer_upgrade_logs WHERE id = %s", event["logId"])
    assert row["error"] == "ClusterPermanentError: create job: HTTP 422: token=[redacted] refused"


def test_every_channel_gets_the_outbox_rows_detail_redacted(make_customers, fake_workflow, sql):
    """The outbox is the one way out (EventBridge, the webhook, Slack): whatever a row's detail holds.

    Breakage tried: OutboxEvent.from_row without PATTERNS.value: the envelope carries the password."""
    import json

    detail = {"customer": {"customerId": "cust_0001", "error": f"helm: DB_PASSWORD={PASSWORD}"},
              "run": {"reason": f"https://deployer:{PASSWORD}@git.example.com/charts"}}  # fmt: skip
    sql("INSERT INTO event_outbox (event_key, detail_type, severity, detail) VALUES ('k-1', 'Customer Upgrade Failed',"
        " 'attention', %s::jsonb)", json.dumps(detail))  # fmt: skip

    (event,) = factory.outbox().events()
    sent = json.dumps(event.envelope())
    assert PASSWORD not in sent
    assert event.detail["customer"]["error"] == "helm: DB_PASSWORD=[redacted]"
    assert event.detail["run"]["reason"] == "https://deployer:[redacted]@git.example.com/charts"


def test_the_full_output_is_its_own_route_and_only_that_upgrades(make_customers, fake_workflow, sql):
    uid, event = _started(sql, make_customers)
    orchestration.check_helm_job(event, cluster=FinishedJobCluster(), outputs=factory.helm_outputs())

    code, body = call("api_upgrades", "api_upgrades_helm_output", f"/api/upgrades/{uid}/logs/{event['logId']}/output",
                      {"upgradeId": str(uid), "logId": str(event["logId"])})  # fmt: skip
    assert code == 200, body
    assert (body["upgradeId"], body["logId"], body["customerId"], body["retentionDays"]) == (
        str(uid), str(event["logId"]), "cust_0001", 30)  # fmt: skip
    (output,) = body["outputs"]
    assert output["stage"] == "upgrade" and "Your database password is [redacted]" in output["output"]
    # the logs route (the viewer's) has the summary only
    code, page = logs(str(uid))
    (entry,) = page["logs"]
    assert code == 200 and "database password" not in str(page) and "has been upgraded" in entry["output"]
    # a log entry of another upgrade (or none) is a 404
    other = int(deploy(component="dashboard", version="v2.0.0")["upgradeId"])
    code, body = call("api_upgrades", "api_upgrades_helm_output", f"/api/upgrades/{other}/logs/{event['logId']}/output",
                      {"upgradeId": str(other), "logId": str(event["logId"])})  # fmt: skip
    assert code == 404, body


def test_the_sweep_deletes_full_outputs_past_the_retention(make_customers, fake_workflow, sql):
    """Breakage tried: sweep() without the expire call: the old output stays."""
    uid, event = _started(sql, make_customers)
    orchestration.check_helm_job(event, cluster=FinishedJobCluster(), outputs=factory.helm_outputs())
    outputs = factory.helm_outputs()
    outputs.record(event["logId"], "helm-restore-x-a1", stage="restore", phase="succeeded", output="recent",
                   header=None)  # fmt: skip
    sql("UPDATE helm_outputs SET recorded_at = NOW() - interval '31 days' WHERE job_name <> 'helm-restore-x-a1'")

    swept = reconciliation.sweep(recon=factory.reconcile(), runs=factory.runs(), executions=fake_workflow,
                                 cluster=None, outputs=outputs, output_retention_days=30)  # fmt: skip

    assert swept.as_dict()["expiredOutputs"] == 1
    assert [r["job_name"] for r in sql("SELECT job_name FROM helm_outputs")] == ["helm-restore-x-a1"]


def test_a_worker_event_naming_another_upgrades_row_touches_nothing(make_customers, fake_workflow, sql):
    """BeginCustomer and FinishCustomer act on `logId` only when the row belongs to the event's `upgradeId`
    (a hand-edited execution input, a replayed event of another execution). Breakage tried: the claim's
    `AND l.upgrade_id = ...` and the finish's check removed: the other upgrade's row was claimed and finished."""
    from upgrader.infra.errors import LogRowOfAnotherUpgrade

    uid, event = _started(sql, make_customers)
    other = {**event, "upgradeId": uid + 1000}
    before = sql("SELECT * FROM customer_upgrade_logs WHERE id = %s", event["logId"])
    with pytest.raises(LogRowOfAnotherUpgrade, match=rf"belongs to upgrade {uid}, not to upgrade {uid + 1000}$"):
        orchestration.finish_customer({**other, "job": {"phase": "succeeded", "stage": "upgrade"}}, runs=factory.runs())
    assert sql("SELECT * FROM customer_upgrade_logs WHERE id = %s", event["logId"]) == before
    sql("UPDATE customer_upgrade_logs SET status = 'pending' WHERE id = %s", event["logId"])
    with pytest.raises(LogRowOfAnotherUpgrade):
        orchestration.begin_customer(other, runs=factory.runs())
    assert sql("SELECT status FROM customer_upgrade_logs WHERE id = %s", event["logId"])[0]["status"] == "pending"
