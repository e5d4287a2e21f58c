"""Run the real ASL locally: moto's executing Step Functions + our Python handlers in-process.

moto (5.2.x) interprets the state machine with LocalStack's ASL parser when the mock config sets
``stepfunctions.execute_state_machine``. Lambda tasks go through moto's Lambda API; with
``lambda.use_docker`` off that API is served by ``LambdaSimpleBackend``, whose ``invoke`` only replays
canned results. ``LocalStepFunctions`` replaces that single method with a dispatcher that calls our
handler for the function name and answers like the Lambda service does, including the error
envelope that lets ASL ``Retry``/``Catch`` match on the exception class name.

Lambda tasks reach the dispatcher without the HTTP layer in between (`_DirectLambda`): botocore and
moto's request handling cost more CPU than most handlers.

Used by pytest (``with LocalStepFunctions(handlers) as engine: ...``) and by the long-running local
stack (``engine.start()`` ... ``engine.stop()``). Not deployed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from moto import mock_aws
from moto.awslambda.exceptions import UnknownFunctionException
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import DefaultConfig

from upgradectl.local.asl_definitions import function_name_from, render_definition, substitution_key
from upgradectl.local.lambda_runtime import (
    FakeLambdaContext,
    Handler,
    HandlerFailure,
    SimulatedLambdaFailure,
    decode_payload,
    error_envelope,
    run_async,
)
from upgradectl.local.moto_patches import CachedClients, FastInterpreter, check_moto_compat

# Threads handlers run on (warm Lambda containers); more invocations at once wait for a free one. Each
# keeps its own database connection, so this also bounds the connections one local stack opens (well
# under PostgreSQL's default max_connections of 100, with room for the second test worker and a second stack).
LAMBDA_CONTAINERS = 24

LOGGER = logging.getLogger(__name__)

MOTO_MOCK_CONFIG: DefaultConfig = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}

_FAKE_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

_ROLE_NAME = "local-upgrade-engine"
_ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["states.amazonaws.com", "lambda.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


class LocalStepFunctions:
    """moto Step Functions (executing mode) whose Lambda tasks run our handlers in-process.

    ``handlers`` maps a Lambda function name (the folder name under ``functions/``) to its
    ``lambda_handler(event, context)``. Handlers run on moto's interpreter threads, possibly
    concurrently: the dispatcher keeps no state besides the mapping.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        region: str = "us-east-1",
        bucket: str = "upgrade-manifests",
        memory_limit_in_mb: int = 512,
        function_timeout_seconds: float = 900.0,
    ) -> None:
        self.handlers: dict[str, Handler] = dict(handlers)
        self.region = region
        self.bucket = bucket
        self.memory_limit_in_mb = memory_limit_in_mb
        self.function_timeout_seconds = function_timeout_seconds
        self.role_arn = ""
        self._function_arns: dict[str, str] = {}
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._original_invoke: Any = None
        self._sfn: Any = None
        self._s3: Any = None
        self._clients = CachedClients()
        self._interpreter = FastInterpreter()
        # Warm "Lambda containers": handlers run on long-lived threads, so what a warm Lambda keeps
        # between invocations (its database connection, per thread) is reused, not opened per invoke
        # on moto's short-lived interpreter threads.
        self._containers: ThreadPoolExecutor | None = None
        # Every unhandled handler error, in order: what the state machine's Retry/Catch then met.
        self.failures: list[HandlerFailure] = []

    # -- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> LocalStepFunctions:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def started(self) -> bool:
        return self._mock is not None

    def start(self) -> LocalStepFunctions:
        """Start moto, create the role, functions and bucket, and install the Lambda dispatcher."""
        if self.started:
            raise RuntimeError("LocalStepFunctions is already started")
        check_moto_compat()
        if getattr(LambdaSimpleBackend.invoke, "_local_engine_dispatcher", False):
            raise RuntimeError("another LocalStepFunctions is running in this process; stop it first")

        self._set_fake_env()
        self._mock = mock_aws(config=MOTO_MOCK_CONFIG)
        self._mock.start()
        try:
            self._original_invoke = LambdaSimpleBackend.__dict__["invoke"]
            self._containers = ThreadPoolExecutor(max_workers=LAMBDA_CONTAINERS, thread_name_prefix="lambda")
            LambdaSimpleBackend.invoke = self._make_dispatcher()  # type: ignore[method-assign]
            self._clients.install()
            self._interpreter.install()
            self._sfn = boto3.client("stepfunctions", region_name=self.region)
            self._s3 = boto3.client("s3", region_name=self.region)
            self._create_role()
            for name in self.handlers:
                self._create_function(name)
            self._create_bucket()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, keep_mock: bool = False) -> None:
        """Stop running executions, restore moto's ``invoke`` and the environment, stop moto.

        ``keep_mock``: the process exits next (the local stack). Executions are stopped, but an
        interpreter thread may still be inside a task; with moto left in place its last calls reach
        moto, never the real AWS endpoints (which they would once the mock is gone)."""
        if self._mock is None:
            self._restore_env()
            return
        if keep_mock:
            if self._sfn is not None:
                self._stop_running_executions()
            self._stop_containers()
            return
        try:
            if self._sfn is not None:
                self._stop_running_executions()
        finally:
            if self._original_invoke is not None:
                LambdaSimpleBackend.invoke = self._original_invoke  # type: ignore[method-assign]
                self._original_invoke = None
            self._clients.remove()
            self._interpreter.remove()
            self._stop_containers()
            mock, self._mock = self._mock, None
            try:
                mock.stop()
            finally:
                self._restore_env()
                self._sfn = None
                self._s3 = None
                self._function_arns = {}

    def _stop_containers(self) -> None:
        containers, self._containers = self._containers, None
        if containers is not None:
            containers.shutdown(wait=False)  # idle ones end now, busy ones after their invocation

    # -- public API ----------------------------------------------------------------------------------
    @property
    def sfn(self) -> Any:
        """boto3 Step Functions client bound to the mock."""
        self._require_started()
        return self._sfn

    @property
    def s3(self) -> Any:
        """boto3 S3 client bound to the mock."""
        self._require_started()
        return self._s3

    def function_arn(self, name: str) -> str:
        """ARN of the moto Lambda function for handler ``name``."""
        self._require_started()
        try:
            return self._function_arns[name]
        except KeyError:
            raise KeyError(f"no local Lambda function named {name!r}; known: {sorted(self.handlers)}") from None

    def substitutions_for(self, function_names: Iterable[str] | None = None) -> dict[str, str]:
        """DefinitionSubstitutions as the template provides them: ``<CamelName>FunctionArn`` + bucket."""
        names = self.handlers if function_names is None else function_names
        substitutions = {substitution_key(name): self.function_arn(name) for name in names}
        substitutions["ManifestBucket"] = self.bucket
        return substitutions

    def create_state_machine(self, name: str, definition_path: Path, substitutions: Mapping[str, str]) -> str:
        """Create a STANDARD state machine from an ASL file after ``${Key}`` substitution; return its ARN."""
        definition = render_definition(Path(definition_path).read_text(encoding="utf-8"), substitutions)
        return self.create_state_machine_from_definition(name, definition)

    def create_state_machine_from_definition(self, name: str, definition: str | Mapping[str, Any]) -> str:
        """Create a STANDARD state machine from an ASL string or dict (already substituted)."""
        text = definition if isinstance(definition, str) else json.dumps(definition)
        response = self.sfn.create_state_machine(name=name, definition=text, roleArn=self.role_arn, type="STANDARD")
        return str(response["stateMachineArn"])

    def start_execution(self, state_machine_arn: str, payload: Any, *, name: str | None = None) -> str:
        """Start an execution; always named (moto names unnamed ones ``None``)."""
        response = self.sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=name or f"local-{uuid.uuid4()}",
            input=json.dumps(payload),
        )
        return str(response["executionArn"])

    def wait_for_execution(self, execution_arn: str, timeout: float = 60.0, poll: float = 0.05) -> dict:
        """Poll ``describe_execution`` until the execution leaves RUNNING; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            description: dict = self.sfn.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING":
                return description
            if time.monotonic() >= deadline:
                raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout} s")
            time.sleep(poll)

    # -- internals -----------------------------------------------------------------------------------
    def _require_started(self) -> None:
        if not self.started:
            raise RuntimeError("LocalStepFunctions is not started (use it as a context manager or call start())")

    def _set_fake_env(self) -> None:
        wanted = dict(_FAKE_ENV)
        wanted["AWS_DEFAULT_REGION"] = self.region
        for key, value in wanted.items():
            if not os.environ.get(key):
                self._saved_env[key] = os.environ.get(key)
                os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    def _create_role(self) -> None:
        iam = boto3.client("iam", region_name=self.region)
        self.role_arn = iam.create_role(RoleName=_ROLE_NAME, AssumeRolePolicyDocument=_ASSUME_ROLE_POLICY)["Role"][
            "Arn"
        ]

    def _create_function(self, name: str) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
        response = boto3.client("lambda", region_name=self.region).create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=self.role_arn,
            Handler="app.lambda_handler",
            Code={"ZipFile": buffer.getvalue()},
            MemorySize=self.memory_limit_in_mb,
            Timeout=int(self.function_timeout_seconds),
        )
        self._function_arns[name] = response["FunctionArn"]

    def _create_bucket(self) -> None:
        if self.region == "us-east-1":
            self._s3.create_bucket(Bucket=self.bucket)
        else:
            self._s3.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": self.region})

    def _stop_running_executions(self) -> None:
        # Interpreter threads left running would outlive the mock; stopping them is best effort.
        try:
            for machine in self._sfn.list_state_machines().get("stateMachines", []):
                running = self._sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")
                for execution in running.get("executions", []):
                    self._sfn.stop_execution(executionArn=execution["executionArn"], cause="engine stopped")
        except Exception:  # noqa: BLE001 - shutdown must go on
            LOGGER.warning("could not stop running executions", exc_info=True)

    def _make_dispatcher(self) -> Callable[..., bytes]:
        handlers = dict(self.handlers)
        engine = self
        memory = self.memory_limit_in_mb
        timeout = self.function_timeout_seconds

        def invoke(
            self: LambdaSimpleBackend,
            function_name: str,
            qualifier: str | None,
            body: Any,
            headers: Any,
            response_headers: Any,
        ) -> bytes:
            name = function_name_from(function_name)
            handler = handlers.get(name)
            if handler is None:
                raise UnknownFunctionException(f"arn:aws:lambda:{self.region_name}:{self.account_id}:function:{name}")
            context = FakeLambdaContext(
                function_name=name,
                invoked_function_arn=(
                    function_name
                    if function_name.startswith("arn:")
                    else f"arn:aws:lambda:{self.region_name}:{self.account_id}:function:{name}"
                ),
                memory_limit_in_mb=memory,
                timeout_seconds=timeout,
                log_group_name=f"/aws/lambda/{name}",
            )
            if (headers or {}).get("X-Amz-Invocation-Type") == "Event":
                # An asynchronous invocation: Lambda queues it and answers 202 at once.
                thread = threading.Thread(
                    target=run_async, args=(name, handler, body, context), name=f"async-{name}", daemon=True
                )
                thread.start()
                return b""
            try:
                event = decode_payload(body)
                result = engine._containers.submit(handler, event, context).result() if engine._containers else (
                    handler(event, context))  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - Lambda reports every unhandled error the same way
                LOGGER.info("handler %s raised %s: %s", name, type(exc).__name__, exc)
                error_type = exc.error_type if isinstance(exc, SimulatedLambdaFailure) else None
                engine.failures.append(HandlerFailure(name, error_type or type(exc).__name__, str(exc)))
                response_headers["x-amz-function-error"] = "Unhandled"
                return error_envelope(exc, error_type)
            try:
                return json.dumps(result).encode("utf-8")
            except (TypeError, ValueError) as exc:
                response_headers["x-amz-function-error"] = "Unhandled"
                return error_envelope(exc, error_type="Runtime.MarshalError")

        invoke._local_engine_dispatcher = True  # type: ignore[attr-defined]
        return invoke
