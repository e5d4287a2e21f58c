"""Starting a sync in the background: an asynchronous invocation of the sync function (the only module
that calls the Lambda API)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from upgrader.infra.errors import SyncUnavailable


class SyncLauncher(Protocol):
    def launch(self, sync_id: int, requested_by: str | None) -> None: ...


class LambdaSyncLauncher:
    def __init__(self, client: Any, function_name: str) -> None:
        self._client = client
        self._function = function_name

    def launch(self, sync_id: int, requested_by: str | None) -> None:
        """Queue the sync's run (InvocationType Event: Lambda answers 202 at once and runs it, retrying
        twice on failure; the worker claims the sync once, so a retry after a success does nothing)."""
        try:
            self._client.invoke(
                FunctionName=self._function,
                InvocationType="Event",
                Payload=json.dumps({"syncId": sync_id, "requestedBy": requested_by}).encode("utf-8"),
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SyncUnavailable(
                f"the sync could not be started ({error.get('Code')}): {error.get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:
            raise SyncUnavailable(f"the sync could not be started: {exc}") from exc
