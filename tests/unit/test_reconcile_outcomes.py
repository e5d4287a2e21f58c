"""What the reconciler records for a customer whose execution ended before its last helm Job did, for
every Job a customer can run: the plain and blue-green upgrade steps, and the rollbacks."""

from __future__ import annotations

import pytest
from upgrader.rollout.reconciliation import _JOB_OPERATION, _outcome

UPGRADE, ROLLBACK = {"operation": "upgrade"}, {"operation": "rollback"}


@pytest.mark.parametrize(
    ("row", "operation", "succeeded", "status", "words"),
    [
        (UPGRADE, "upgrade", True, "completed", None),
        (UPGRADE, "upgrade", False, "failed", "boom"),
        # blue-green: a slot never switched to changed nothing that serves
        (UPGRADE, "slot", True, "failed", "nothing switched"),
        (UPGRADE, "slot", False, "failed", "nothing switched"),
        (UPGRADE, "switch", True, "completed", None),
        (UPGRADE, "switch", False, "failed", "the switch did not happen"),
        # the switch happened before a finalize: the upgrade is done either way
        (UPGRADE, "finalize", True, "completed", None),
        (UPGRADE, "finalize", False, "completed", "removing the old slot failed"),
        (ROLLBACK, "switch", True, "completed", None),
        (ROLLBACK, "switch", False, "failed", "boom"),
        (ROLLBACK, "rollback", True, "completed", None),
    ],
)
def test_the_outcome_of_each_last_job(row, operation, succeeded, status, words):
    recorded, error = _outcome(row, operation, succeeded, None if succeeded else "boom", 7)
    assert recorded == status
    if words is None:
        assert error is None
    else:
        assert error is not None and words in error


@pytest.mark.parametrize("operation", ["upgrade", "restore", "rollback", "recover", "slot", "switch", "finalize"])
def test_every_job_name_the_product_builds_is_recognised(operation):
    match = _JOB_OPERATION.match(f"helm-{operation}-42-cust-1-abcdef12-a1")
    assert match is not None and match.group(1) == operation
