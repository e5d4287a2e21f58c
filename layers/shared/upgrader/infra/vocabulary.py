"""Words the code, the API document, the event schemas, the metrics and the CLI share, each defined once.

No imports beyond the standard library: the repository, the metrics and the API models all read these
without paying for pydantic (upgrader.contract.models re-exports them for the API). The components and the
strategies are registries of their own: upgrader.infra.components, upgrader.contract.strategies.
"""

from __future__ import annotations

from typing import Literal, get_args

# Every status an upgrade (system_upgrades.status) can have: the active ones, then the final ones (a
# whole-upgrade rollback ends as rolled_back or rollback_incomplete). The repository, the list filter
# (GET /api/upgrades?status=), the document and the metrics derive theirs from these.
ActiveUpgradeStatus = Literal["pending", "in_progress", "awaiting_continue"]
FinalUpgradeStatus = Literal[
    "completed", "completed_with_failures", "failed", "halted", "aborted", "rolled_back", "rollback_incomplete"
]
UpgradeStatus = Literal[ActiveUpgradeStatus, FinalUpgradeStatus]
ACTIVE_UPGRADE_STATUSES: tuple[str, ...] = get_args(ActiveUpgradeStatus)
FINAL_UPGRADE_STATUSES: tuple[str, ...] = get_args(FinalUpgradeStatus)
UPGRADE_STATUSES: tuple[str, ...] = get_args(UpgradeStatus)
