"""The state machine's steps as domain functions. Each is idempotent: delivered twice, it acts once.

Parent (one execution per run): `parent_steps`. Child (one per customer): `customer_steps`, which starts
the helm Jobs (blue-green ones in `bluegreen_steps`, restoring ones in `rollback_steps`), and
`helm_checks`, which looks at them and at the workloads. What they share: `state`.
"""

from upgrader.rollout.orchestration.customer_steps import (
    FIRST_LOOK_MARGIN_SECONDS,
    MAX_FIRST_WAIT_SECONDS,
    begin_customer,
    finish_customer,
    first_wait_seconds,
    start_helm_job,
)
from upgrader.rollout.orchestration.helm_checks import check_helm_job, check_rollout
from upgrader.rollout.orchestration.parent_steps import (
    await_continue,
    await_window,
    evaluate_wave,
    finalize_run,
    prepare_run,
    prepare_wave,
)
from upgrader.rollout.orchestration.state import MAX_OUTAGE_SECONDS, State

__all__ = [
    "FIRST_LOOK_MARGIN_SECONDS", "MAX_FIRST_WAIT_SECONDS", "MAX_OUTAGE_SECONDS", "State", "await_continue", "await_window", "begin_customer",
    "check_helm_job", "check_rollout", "evaluate_wave", "finalize_run", "finish_customer", "first_wait_seconds",
    "prepare_run", "prepare_wave", "start_helm_job",
]  # fmt: skip
