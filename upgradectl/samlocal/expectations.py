"""What each file of events/ must answer through `sam local invoke`, against the local stack of `stack`.

The stack holds the demo fleet and no upgrade: the API events name upgrade 123 and the workers' events upgrade 1 and
its rows, so they answer the named errors the API documents (404) and the state machine's Catches match. No AWS
service is reachable (AWS_ENDPOINT_URL is a closed loopback port): a call that needs one answers the error the API
documents for it (503 WorkflowUnavailable, SyncUnavailable) and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Event files changed for the local run: the CloudFormation response goes to a closed loopback port, not to S3.
OVERRIDES: dict[str, dict[str, Any]] = {"migrate": {"ResponseURL": "https://127.0.0.1:9/cloudformation-response"}}


@dataclass(frozen=True)
class Expect:
    status: int | None = None  # API events: the statusCode
    error: str | None = None  # API: the body's `error`; other functions: the runtime's errorType
    fields: Mapping[str, Any] = field(default_factory=dict)  # top-level values of the body or result
    aws: str | None = None  # the AWS service whose absence this answer documents
    stage: int = 0  # 0: first, several at once; then one at a time in stage order (they change the state)


EXPECTED: dict[str, Expect] = {
    # the fleet
    "api_customers_fleet": Expect(200, fields={"customers": 50, "drift": 0, "pinned": 0}),
    "api_customers_fleet_images": Expect(200, fields={"images": []}),
    "api_customers_get": Expect(200, fields={"customerId": "cust_abc123", "status": "active"}),
    "api_customers_list": Expect(200, fields={"count": 15}),
    "api_customers_sync_status": Expect(404, error="SyncNotFound"),
    "sync_customers_schedule": Expect(fields={"status": "completed", "trigger": "schedule"}),
    "sync_customers_request": Expect(fields={"syncId": "7", "status": "not pending"}),
    # upgrades: none yet
    "api_upgrades_list": Expect(200, fields={"count": 0, "upgrades": []}),
    "api_upgrades_plan": Expect(200, fields={"component": "api", "version": "v1.2.0", "total": 50}),
    "api_upgrades_status": Expect(404, error="UpgradeNotFound"),
    "api_upgrades_logs": Expect(404, error="UpgradeNotFound"),
    "api_upgrades_helm_output": Expect(404, error="LogRowNotFound"),
    "api_upgrades_analysis": Expect(404, error="UpgradeNotFound"),
    "api_control_continue": Expect(404, error="UpgradeNotFound"),
    "api_control_rollback": Expect(404, error="UpgradeNotFound"),
    "api_control_rollback_upgrade": Expect(404, error="UpgradeNotFound"),
    "api_control_abort": Expect(404, error="UpgradeNotFound"),
    # Step Functions
    "api_queue_stats": Expect(503, error="WorkflowUnavailable", aws="Step Functions"),
    "api_queue_job": Expect(503, error="WorkflowUnavailable", aws="Step Functions"),
    # the state machine's workers: upgrade 1 and its rows are not in this database
    "prepare_run": Expect(error="UpgradeNotFound"),
    "prepare_wave": Expect(fields={"upgradeId": 1, "wave": 0, "slice": 0}),
    "evaluate_wave": Expect(fields={"upgradeId": 1, "wave": 1}),
    "await_continue": Expect(error="GateClosed"),
    "await_window": Expect(error="GateClosed"),
    "finalize_run": Expect(error="UpgradeNotFound"),
    "begin_customer": Expect(error="LogRowNotFound"),
    "start_helm_job": Expect(error="LogRowNotFound"),
    "finish_customer": Expect(error="LogRowNotFound"),
    # the analysis gate: upgrade 1 has no customer here, so its round measures nobody and waits for the next
    "analyze_wave": Expect(fields={"upgradeId": 1, "analysisStep": "wait", "analysisRound": 1}),
    # the cluster workers, as the jobs and reader identities: customer-0001 is not a namespace they may read
    "check_helm_job": Expect(error="ClusterPermanentError"),
    "check_rollout": Expect(error="ClusterPermanentError"),
    # background functions
    "publish_events_schedule": Expect(fields={"sent": 0, "failed": 0, "errors": []}),
    "notify_slack_gate_waiting": Expect(fields={"eventId": 42, "notified": False}),
    "reconcile_runs_sweep": Expect(fields={"reconciled": [], "stillRunning": []}),
    "reconcile_runs_execution_failed": Expect(fields={"reconciled": [], "stillRunning": []}),
    "migrate": Expect(error="ResponseNotDelivered", aws="CloudFormation (the custom resource's response URL)"),
    # writes, one at a time, after the rest (the list's count, the sync, the idempotency key depend on them)
    "api_customers_patch": Expect(200, stage=1),
    "api_customers_rules_create": Expect(201, fields={"ruleId": "1"}, stage=2),
    "api_customers_rules_list": Expect(200, fields={"count": 1}, stage=3),
    "api_customers_rules_delete": Expect(200, fields={"ruleId": "1"}, stage=4),
    "api_deploy": Expect(503, error="WorkflowUnavailable", aws="Step Functions", stage=5),
    "api_deploy_idempotent": Expect(503, error="WorkflowUnavailable", aws="Step Functions", stage=6),
    "api_sync": Expect(503, error="SyncUnavailable", aws="Lambda", stage=7),
    # rings and promotion: no rule yet (not enforced), then one set, read, audited and deleted
    "api_upgrades_promotions": Expect(200, fields={"component": "api", "enforced": False, "nextRing": "staging"}),
    "api_customers_promotion_rules_list": Expect(
        200, fields={"ringOrder": ["staging", "internal", "early", "production"]}
    ),
    "api_customers_promotion_rules_set": Expect(200, fields={"component": "api", "configured": True}, stage=8),
    "api_customers_promotion_rules_history": Expect(200, fields={"component": "api"}, stage=9),
    "api_customers_promotion_rules_delete": Expect(200, fields={"configured": False}, stage=10),
}


def judge(answer: Any, expect: Expect) -> str | None:
    """Why `answer` is not what `expect` says (naming the part), or None when it is."""
    if not isinstance(answer, dict):
        return f"the answer is not a JSON object: {answer!r}"
    if "errorType" in answer and expect.status is None:
        body: Any = answer
        if answer["errorType"] != expect.error:
            return f"raised {answer['errorType']}: {answer.get('errorMessage')} (expected {expect.error or 'a result'})"
        return None
    if expect.status is not None:
        if "statusCode" not in answer:
            return f"no HTTP answer: {json.dumps(answer)[:400]}"
        body = json.loads(answer.get("body") or "null")
        if answer["statusCode"] != expect.status:
            return f"statusCode {answer['statusCode']} (expected {expect.status}): {json.dumps(body)[:400]}"
        if expect.error is not None and (body or {}).get("error") != expect.error:
            return f"error {(body or {}).get('error')!r} (expected {expect.error}): {json.dumps(body)[:400]}"
    else:
        body = answer
        if expect.error is not None:
            return f"answered {json.dumps(answer)[:400]} (expected the error {expect.error})"
    for key, wanted in expect.fields.items():
        if not isinstance(body, dict) or body.get(key) != wanted:
            got = body.get(key) if isinstance(body, dict) else body
            return f"{key} is {got!r} (expected {wanted!r})"
    return None
