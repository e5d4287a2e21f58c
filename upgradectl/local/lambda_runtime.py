"""The Lambda service as our handlers see it in the local engine: the context object, the error envelope that
lets ASL `Retry`/`Catch` match an exception by its class name, a function that does not finish (a timeout, a
crash), and an asynchronous invocation. Not deployed."""

from __future__ import annotations

import json
import logging
import random
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict, object], object]

LOGGER = logging.getLogger("upgradectl.local.engine")  # the engine's log: what an operator filters on


@dataclass(frozen=True)
class HandlerFailure:
    """One invocation that ended in an unhandled error, as Lambda reported it to Step Functions."""

    function: str
    error_type: str
    message: str


class SimulatedLambdaFailure(Exception):
    """Raise from a handler (tests) to end the invocation the way the Lambda service reports a function
    that did not finish: a timeout (``Sandbox.Timedout``) or a crash/out-of-memory (``Lambda.Unknown``),
    rather than as the exception's own class name."""

    def __init__(self, error_type: str = "Sandbox.Timedout", message: str = "Task timed out after 30.00 seconds"):
        super().__init__(message)
        self.error_type = error_type


_REQUEST_IDS = random.Random()  # noqa: S311 - request ids, not secrets


def _request_id() -> str:
    """A UUID4 without a getrandom syscall (per invoke, with many threads waiting for the GIL)."""
    return str(uuid.UUID(int=_REQUEST_IDS.getrandbits(128), version=4))


@dataclass(frozen=True)
class FakeLambdaContext:
    """The parts of the Lambda context object that our handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    timeout_seconds: float = 60.0
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: _request_id())
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


def error_envelope(exc: BaseException, error_type: str | None = None) -> bytes:
    """The body Lambda returns for an unhandled exception (Python runtime shape)."""
    return json.dumps(
        {
            "errorType": error_type or type(exc).__name__,
            "errorMessage": str(exc),
            "requestId": "",
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
    ).encode("utf-8")


def decode_payload(body: Any) -> Any:
    if body is None or body == b"" or body == "":
        return {}
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8")
    return json.loads(body)


def run_async(name: str, handler: Handler, body: Any, context: FakeLambdaContext) -> None:
    try:
        handler(decode_payload(body), context)
    except Exception as exc:  # noqa: BLE001 - Lambda logs an async invocation's error; nobody waits for it
        LOGGER.warning("asynchronous invocation of %s raised %s: %s", name, type(exc).__name__, exc)
