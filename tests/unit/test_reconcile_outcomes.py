"""What the reconciler records for a customer whose execution ended before its last helm Job did, for
every Job a customer can run: the plain and blue-green upgrade steps, and the rollbacks."""

from __future__ import annotations

import pytest
from upgrader.rollout.reconciliation import _JOB_OPERATION, ReconcileResult, _outcome, execution_reason

UPGRADE, ROLLBACK = "upgrade", "rollback"  # the row's own operation


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


@pytest.mark.parametrize(
    ("row", "operation", "succeeded", "expected"),
    [
        (UPGRADE, "upgrade", True, ("completed", None)),
        (UPGRADE, "upgrade", False, ("failed", "boom")),
        (
            UPGRADE,
            "slot",
            True,
            ("failed", "the new version is on the idle slot but its run ended before the switch; nothing switched"),
        ),
        (UPGRADE, "slot", False, ("failed", "boom; nothing switched")),
        (UPGRADE, "switch", True, ("completed", None)),
        (UPGRADE, "switch", False, ("failed", "boom; the switch did not happen")),
        (UPGRADE, "finalize", True, ("completed", None)),
        (UPGRADE, "finalize", False, ("completed", "switched; removing the old slot failed: boom")),
        (UPGRADE, "recover", True, ("skipped", "release recovered; not upgraded: its run ended")),
        (UPGRADE, "recover", False, ("failed", "could not recover the stuck release: boom")),
        # an automatic rollback (or a restore after a killed upgrade): the upgrade did not stick
        (UPGRADE, "rollback", True, ("failed", "the upgrade did not complete; rolled back to revision 7")),
        (UPGRADE, "restore", False, ("failed", "the upgrade did not complete; rollback failed: boom")),
        (ROLLBACK, "rollback", True, ("completed", None)),
        (ROLLBACK, "rollback", False, ("failed", "boom")),
        (ROLLBACK, "restore", True, ("completed", None)),
        (ROLLBACK, "switch", False, ("failed", "boom")),
        # a rollback row whose last Job was some other operation: the rollback itself never ran to its end
        (ROLLBACK, "recover", True, ("failed", "the rollback did not complete")),
        (ROLLBACK, "upgrade", False, ("failed", "the rollback did not complete: boom")),
    ],
)
def test_the_outcome_of_each_last_job_word_for_word(row, operation, succeeded, expected):
    """The status and the whole error the reconciler records, for every branch of `_outcome`.

    Kills the mutants of `rollout/reconciliation.py:279-299` that keep the words `test_the_outcome_of_each_last_job`
    looks for (each message renamed `"XX...XX"`, `"helm Job failed"` renamed, `"recover"`/`"restore"`/
    `"rollback"` renamed or dropped from the tuples, each status renamed, the `revision` left out)."""
    assert _outcome(row, operation, succeeded, None if succeeded else "boom", 7) == expected


def test_a_failed_job_without_an_error_of_its_own_is_named_as_a_failed_helm_job():
    """Kills `rollout/reconciliation.py:279` (`error or "helm Job failed"` → `"XXhelm Job failedXX"`, `and`)."""
    assert _outcome(UPGRADE, "upgrade", False, None, 3) == ("failed", "helm Job failed")
    assert _outcome(ROLLBACK, "rollback", False, None, 3) == ("failed", "helm Job failed")


def test_the_reason_names_the_execution_its_status_its_error_and_the_start_of_its_cause():
    """What a run ended by the reconciler says (its end reason, each skipped customer's error): the cause is
    cut at 500 characters, and what is missing is left out with its separator.

    Kills `rollout/reconciliation.py:157-158`: `": ".join` renamed, `(cause or "")` → `(cause and "")`,
    `[:500]` → `[:501]`, `if part` dropped, and each piece of the message renamed."""
    assert execution_reason("upgrade-7-a1", "FAILED", "States.Runtime", "boom") == (
        "execution upgrade-7-a1 ended FAILED (States.Runtime: boom)"
    )
    assert execution_reason("upgrade-7-a1", "ABORTED", None, None) == "execution upgrade-7-a1 ended ABORTED"
    assert (
        execution_reason("upgrade-7-a1", "TIMED_OUT", None, "late") == "execution upgrade-7-a1 ended TIMED_OUT (late)"
    )
    assert execution_reason("upgrade-7-a1", "FAILED", "States.Timeout", "") == (
        "execution upgrade-7-a1 ended FAILED (States.Timeout)"
    )
    long_cause = "x" * 499 + "yz"
    assert execution_reason("r", "FAILED", None, long_cause) == f"execution r ended FAILED ({'x' * 499}y)"


def test_a_result_reports_expired_outputs_only_when_some_were_deleted():
    """Kills `rollout/reconciliation.py:59-60` (each key renamed, `if self.expired_outputs` inverted)."""
    result = ReconcileResult(reconciled=["upgrade-1-a1"], settled=[4], still_running=[5])
    assert result.as_dict() == {"reconciled": ["upgrade-1-a1"], "settled": [4], "stillRunning": [5]}
    result.expired_outputs = 3
    assert result.as_dict() == {"reconciled": ["upgrade-1-a1"], "settled": [4], "stillRunning": [5],
                                "expiredOutputs": 3}  # fmt: skip
    assert ReconcileResult().as_dict() == {"reconciled": [], "settled": [], "stillRunning": []}
