"""Step Functions gateway: the only module that calls the Step Functions API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from upgrader.infra.errors import NotFound, WorkflowUnavailable

_TRANSIENT_CODES = {"ThrottlingException", "ServiceUnavailable", "InternalServerError", "RequestLimitExceeded"}


class WorkflowGateway(Protocol):
    def start(self, name: str, payload: dict[str, Any]) -> str: ...
    def send_continue(self, task_token: str, output: dict[str, Any]) -> None: ...
    def send_failure(self, task_token: str, error: str, cause: str) -> None: ...
    def execution_counts(self) -> dict[str, int]: ...
    def describe(self, name: str) -> dict[str, Any]: ...
    def execution_status(self, name: str) -> dict[str, Any]: ...


class StepFunctionsGateway:
    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._client = client
        self._arn = state_machine_arn

    def execution_arn(self, name: str) -> str:
        # arn:aws:states:region:account:stateMachine:Name -> ...:execution:Name:exec
        return self._arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def start(self, name: str, payload: dict[str, Any]) -> str:
        """Start the named execution; starting the same name again is not an error (idempotent)."""
        try:
            response = self._client.start_execution(
                stateMachineArn=self._arn, name=name, input=json.dumps(payload, sort_keys=True)
            )
            return str(response["executionArn"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExecutionAlreadyExists":
                return self.execution_arn(name)
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise WorkflowUnavailable(f"Step Functions unreachable: {exc}") from exc

    def send_continue(self, task_token: str, output: dict[str, Any]) -> None:
        try:
            self._client.send_task_success(taskToken=task_token, output=json.dumps(output))
        except ClientError as exc:
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise WorkflowUnavailable(f"Step Functions unreachable: {exc}") from exc

    def send_failure(self, task_token: str, error: str, cause: str) -> None:
        try:
            self._client.send_task_failure(taskToken=task_token, error=error, cause=cause[:32768])
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
                return  # the gate is gone already: nothing left to release
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise WorkflowUnavailable(f"Step Functions unreachable: {exc}") from exc

    def execution_counts(self, max_per_status: int = 1000) -> dict[str, int]:
        """Executions of the upgrade state machine by status (each status capped at max_per_status)."""
        counts: dict[str, int] = {}
        try:
            for status in ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"):
                seen = 0
                paginator = self._client.get_paginator("list_executions")
                for page in paginator.paginate(
                    stateMachineArn=self._arn,
                    statusFilter=status,
                    PaginationConfig={"MaxItems": max_per_status, "PageSize": 100},
                ):
                    seen += len(page["executions"])
                counts[status] = seen
        except ClientError as exc:
            raise _translate(exc) from exc
        except BotoCoreError as exc:
            raise WorkflowUnavailable(f"Step Functions unreachable: {exc}") from exc
        return counts

    def execution_status(self, name: str) -> dict[str, Any]:
        """{status, error, cause} of one execution (DescribeExecution only). NotFound when there is none."""
        with _execution_call(f"no execution '{name}' in the upgrade state machine"):
            execution = self._client.describe_execution(executionArn=self.execution_arn(name))
        return {"status": execution["status"], "error": execution.get("error"), "cause": execution.get("cause")}

    def describe(self, name: str) -> dict[str, Any]:
        arn = self.execution_arn(name)
        with _execution_call(f"no job '{name}' in the upgrade state machine"):
            execution = self._client.describe_execution(executionArn=arn)
            runs = self._client.list_map_runs(executionArn=arn).get("mapRuns", [])
        return {"execution": execution, "mapRuns": runs}


@contextmanager
def _execution_call(missing: str) -> Iterator[None]:
    """Calls about one execution: a missing one is NotFound(missing); the rest as everywhere."""
    try:
        yield
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist", "ResourceNotFound"):
            raise NotFound(missing) from exc
        raise _translate(exc) from exc
    except BotoCoreError as exc:
        raise WorkflowUnavailable(f"Step Functions unreachable: {exc}") from exc


def _translate(exc: ClientError) -> Exception:
    code = exc.response["Error"]["Code"]
    message = exc.response["Error"].get("Message", "")
    if code in _TRANSIENT_CODES:
        return WorkflowUnavailable(f"Step Functions is busy ({code}): {message}")
    return WorkflowUnavailable(f"Step Functions refused the call ({code}): {message}")


def epoch_ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)
