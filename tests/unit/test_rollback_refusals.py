"""Why a customer's change cannot be rolled back now (`rollbacks.why_not`), word for word: the 409's message
and each customer a whole-upgrade rollback leaves out carry it. The candidates are the rows `_CANDIDATES`
reads; tests/data/test_rollbacks.py decides them from real upgrade rows."""

from __future__ import annotations

from typing import Any

import pytest
from upgrader.rollout.rollbacks import why_not


def _candidate(**changes: Any) -> dict[str, Any]:
    """A completed upgrade of cust_0001's api from v1.1.0 to v1.2.0 that changed its release, nothing since."""
    return {"customer_id": "cust_0001", "upgrade_id": 12, "component": "api", "status": "completed",
            "version_before": "v1.1.0", "from_version": "v1.0.0", "changed": True, "rolled_back": False,
            "rollback_open": False, "later_upgrade_id": None, "later_version": None, "later_status": None,
            **changes}  # fmt: skip


def test_a_changed_customer_with_nothing_since_can_be_rolled_back():
    assert why_not(_candidate()) is None
    assert why_not(_candidate(status="failed")) is None  # helm succeeded, then its health check failed


@pytest.mark.parametrize("status", ["pending", "in_progress"])
def test_an_upgrade_still_running_is_refused_until_it_has_finished(status):
    """Kills `rollout/rollbacks.py:74-75`: `"pending"`/`"in_progress"` renamed, `in` → `not in`, the message
    renamed."""
    assert why_not(_candidate(status=status)) == (
        f"the upgrade of customer 'cust_0001' is still {status}; roll it back once it has finished"
    )


def test_a_customer_rolled_back_or_being_rolled_back_is_refused_with_which():
    """Kills `rollout/rollbacks.py:76-79`: each key and message renamed."""
    assert why_not(_candidate(rolled_back=True)) == "customer 'cust_0001' is already rolled back for upgrade 12"
    assert why_not(_candidate(rollback_open=True)) == "customer 'cust_0001' is being rolled back for upgrade 12"


def test_an_unchanged_release_is_refused_naming_the_version_it_kept():
    """The version named is the one read from the release; the planned one only when none was read.
    Kills `rollout/rollbacks.py:80-85`: `not candidate["changed"]` inverted, each message part renamed,
    `version_before or from_version` → `and`."""
    assert why_not(_candidate(status="failed", changed=False)) == (
        "the upgrade of customer 'cust_0001' ended 'failed' without changing its release (api still at v1.1.0), "
        "so there is nothing to roll back"
    )
    assert why_not(_candidate(status="skipped", changed=False, version_before=None)) == (
        "the upgrade of customer 'cust_0001' ended 'skipped' without changing its release (api still at v1.0.0), "
        "so there is nothing to roll back"
    )


def test_a_later_upgrade_of_the_component_is_named_with_its_version_and_state():
    """Kills `rollout/rollbacks.py:86-92`: `is not None` inverted, each key and message part renamed."""
    later = _candidate(later_upgrade_id=15, later_version="v1.3.0", later_status="in_progress")
    assert why_not(later) == (
        "customer 'cust_0001''s api was upgraded again since, by upgrade 15 (v1.3.0, in_progress); roll that "
        "upgrade back first, so no later change is reverted behind its back"
    )
