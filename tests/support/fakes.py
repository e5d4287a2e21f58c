"""In-memory stand-ins for the ports, for tests of the API layer alone."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from upgrader.infra.errors import NotFound, SyncUnavailable, WorkflowUnavailable


class FakeWorkflow:
    """Records what the API asks of Step Functions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every call (a test that rebuilds its state from scratch)."""
        self.started: list[tuple[str, dict[str, Any]]] = []
        self.continued: list[tuple[str, dict[str, Any]]] = []
        self.failed_tokens: list[tuple[str, str, str]] = []
        self.fail_start = False
        self.statuses: dict[str, str] = {}  # execution name -> status (default RUNNING)

    def start(self, name: str, payload: dict[str, Any]) -> str:
        if self.fail_start:
            raise WorkflowUnavailable("Step Functions is busy (ThrottlingException): test")
        with self._lock:
            self.started.append((name, payload))
        return f"arn:aws:states:us-east-1:123456789012:execution:upgrade:{name}"

    def send_continue(self, task_token: str, output: dict[str, Any]) -> None:
        with self._lock:
            self.continued.append((task_token, output))

    def send_failure(self, task_token: str, error: str, cause: str) -> None:
        with self._lock:
            self.failed_tokens.append((task_token, error, cause))

    def execution_counts(self) -> dict[str, int]:
        return {"RUNNING": len(self.started), "SUCCEEDED": 0, "FAILED": 0}

    def execution_status(self, name: str) -> dict[str, Any]:
        return {"status": self.statuses.get(name, "RUNNING"), "error": None, "cause": None}

    def describe(self, name: str) -> dict[str, Any]:
        for started, payload in self.started:
            if started == name:
                now = datetime.now(UTC)
                return {
                    "execution": {
                        "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:upgrade:{name}",
                        "status": "RUNNING",
                        "input": __import__("json").dumps(payload),
                        "startDate": now,
                    },
                    "mapRuns": [],
                }
        raise NotFound(f"no job '{name}' in the upgrade state machine")


class FakeSyncLauncher:
    """Records the syncs the API starts (the sync function itself does not run)."""

    def __init__(self) -> None:
        self.launched: list[tuple[int, str | None]] = []
        self.fail = False

    def launch(self, sync_id: int, requested_by: str | None) -> None:
        if self.fail:
            raise SyncUnavailable("the sync could not be started (TooManyRequestsException): test")
        self.launched.append((sync_id, requested_by))
