"""What a customer waiting for its release's lease is told (`describe_holder`): the status line shows it."""

from __future__ import annotations

from datetime import datetime

from upgrader.rollout.leases import describe_holder
from upgrader.rollout.run_records import LeaseHolder


def _holder(operation: str, component: str = "api") -> LeaseHolder:
    return LeaseHolder(log_id=7, operation=operation, component=component, upgrade_id=41, run_name="upgrade-41-a1",
                       acquired_at=datetime(2026, 3, 4, 5, 6, 7, 890000))  # fmt: skip


def test_the_holder_is_named_with_its_operation_upgrade_run_and_since_when():
    """Kills `rollout/leases.py:186`: `"rollback"` renamed (both), `==` → `!=`, the f-string renamed
    (`"XXupgrade of ...XX"`), and `:188-189`'s message renamed."""
    assert describe_holder(_holder("upgrade", "dashboard")) == (
        "release busy: upgrade of dashboard (upgrade 41, run upgrade-41-a1) holds it since 2026-03-04T05:06:07Z"
    )
    assert describe_holder(_holder("rollback")) == (
        "release busy: rollback (upgrade 41, run upgrade-41-a1) holds it since 2026-03-04T05:06:07Z"
    )


def test_a_lease_changing_hands_has_no_holder_to_name():
    """Kills `rollout/leases.py:184` (`holder is None` → `is not None`) and `:185` (the message renamed)."""
    assert describe_holder(None) == "release busy: its lease is changing hands"
