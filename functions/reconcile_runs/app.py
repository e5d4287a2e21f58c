"""The reconciler: finish runs whose execution ended without our code (EventBridge), and sweep (schedule).

Two triggers, one handler:
- EventBridge "Step Functions Execution Status Change" of the upgrade state machine, status FAILED,
  TIMED_OUT or ABORTED: end the runs that execution ran, with its error and cause as the reason;
- EventBridge Scheduler (a sweep): every run the database still calls running whose execution is not
  RUNNING (in case an event was lost), then every lease nobody will give back.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.infra.settings import get_settings
from upgrader.rollout import reconciliation

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event.get("detail") or {}
    if event.get("detail-type") == "Step Functions Execution Status Change":
        name = str(detail.get("name") or "")
        logger.append_keys(execution=name, status=detail.get("status"))
        result = reconciliation.reconcile_execution(
            name,
            str(detail.get("status")),
            detail.get("error"),
            detail.get("cause"),
            recon=factory.reconcile(),
            runs=factory.runs(),
            cluster=factory.cluster(),
            release_windows=factory.halt_window_release(),
            outputs=factory.helm_outputs(),
        )
    else:
        result = reconciliation.sweep(
            recon=factory.reconcile(),
            runs=factory.runs(),
            executions=factory.workflow(),
            cluster=factory.cluster(),
            min_age_seconds=int(event.get("minAgeSeconds", 60)),
            release_windows=factory.halt_window_release(),
            outputs=factory.helm_outputs(),
            output_retention_days=get_settings().helm_output_retention_days,
        )
    summary = result.as_dict()
    if result.reconciled or result.settled:
        logger.info("reconciled", extra=summary)
    return summary
