"""What the HTTP API does, as domain functions over the repositories and a workflow gateway: `deploy`
(plan, preview, start), `control` (continue, abort, roll back, resume) and `queries` (status, rows, lists)."""

from upgrader.api.service.control import (
    abort_upgrade,
    continue_upgrade,
    request_rollback,
    resume_upgrade,
    rollback_upgrade,
)
from upgrader.api.service.deploy import concurrency_within_cap, deploy_upgrade, plan_deploy
from upgrader.api.service.queries import get_logs, get_status, list_upgrades, queue_job, queue_stats

__all__ = [
    "abort_upgrade", "concurrency_within_cap", "continue_upgrade", "deploy_upgrade", "get_logs", "get_status",
    "list_upgrades", "plan_deploy", "queue_job", "queue_stats", "request_rollback", "resume_upgrade",
    "rollback_upgrade",
]  # fmt: skip
