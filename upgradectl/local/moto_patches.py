"""What the local engine changes in moto (5.2.x) while it runs, and the checks that moto still has what it
changes: Lambda tasks handed to the engine's dispatcher without the HTTP round trip (`_DirectLambda`), one
boto3 client per (region, service) (`CachedClients`), and cached JSONPath parsing and JSON-only copies in the
ASL interpreter (`FastInterpreter`). Each fails loudly (`MotoCompatibilityError`) when an upgrade of moto
removes what it patches. Not deployed.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import io
import threading
import types
from collections.abc import Callable
from typing import Any

from moto.awslambda.exceptions import UnknownFunctionException
from moto.awslambda_simple.models import LambdaSimpleBackend

#: The exact signature the dispatcher replaces. moto is pinned to 5.2.*; when an upgrade changes it,
#: ``check_moto_compat`` fails loudly instead of letting tasks silently get canned results.
EXPECTED_INVOKE_PARAMETERS: tuple[str, ...] = (
    "self",
    "function_name",
    "qualifier",
    "body",
    "headers",
    "response_headers",
)


class MotoCompatibilityError(RuntimeError):
    """The installed moto no longer has the Lambda hook this engine patches."""


def check_moto_compat() -> None:
    """Fail loudly unless ``LambdaSimpleBackend.invoke`` has the signature the dispatcher replaces."""
    invoke = LambdaSimpleBackend.__dict__.get("invoke")
    if invoke is None or not callable(invoke):
        raise MotoCompatibilityError(
            "moto.awslambda_simple.models.LambdaSimpleBackend.invoke is missing: the local Step Functions "
            "engine cannot dispatch Lambda tasks to Python handlers with this moto version (pin moto==5.2.*)."
        )
    parameters = tuple(inspect.signature(invoke).parameters)
    if parameters != EXPECTED_INVOKE_PARAMETERS:
        raise MotoCompatibilityError(
            "moto.awslambda_simple.models.LambdaSimpleBackend.invoke changed its signature: expected "
            f"{EXPECTED_INVOKE_PARAMETERS}, found {parameters}. The local Step Functions engine patches this "
            "method; review upgradectl/local/engine.py against the new moto (or pin moto==5.2.*)."
        )


# Modules of moto's ASL interpreter that build a boto3 client on every task (``boto_client_for``): a new
# client per Lambda invoke costs about 10 % of a local rollout's CPU. While the engine runs they get
# one client per (region, service), built once (boto3 clients are thread-safe once built).
_CLIENT_BUILDERS = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
)


class CachedClients:
    """``boto_client_for`` with its clients kept: installed by `LocalStepFunctions.start`, removed by stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, bool], Any] = {}
        self._originals: dict[Any, Any] = {}

    def install(self) -> None:
        for name in _CLIENT_BUILDERS:
            module = importlib.import_module(name)
            original = module.__dict__.get("boto_client_for")
            if original is None:
                raise MotoCompatibilityError(f"{name}.boto_client_for is missing (pin moto==5.2.*)")
            self._originals[module] = original
            module.boto_client_for = self._cached(original)  # type: ignore[attr-defined]

    def remove(self) -> None:
        for module, original in self._originals.items():
            module.boto_client_for = original
        self._originals.clear()
        with self._lock:
            self._clients.clear()

    def _cached(self, original: Callable[..., Any]) -> Callable[..., Any]:
        from moto.core.models import botocore_stubber

        def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            key = (region, service, bool(botocore_stubber.enabled))
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = original(region=region, service=service, state_credentials=state_credentials)
                    if service == "lambda" and botocore_stubber.enabled:
                        client = _DirectLambda(region, client)
                    self._clients[key] = client
            return client

        return boto_client_for


class _DirectLambda:
    """The Lambda client moto's interpreter runs Lambda tasks with, without the HTTP round trip inside the
    process: botocore serializing the request, moto's stubber matching its URL and moto's Lambda responses
    parsing it again cost more CPU than most handlers (a local rollout's largest harness cost).

    `invoke` hands the task to ``LambdaSimpleBackend.invoke`` (the engine's dispatcher, looked up at each
    call so that wrappers of it still see every invocation) with what moto's Lambda API would pass it, and
    answers as the client does (StatusCode, FunctionError, Payload as a stream). A function the dispatcher
    does not know, and every other operation, goes through the real client (its errors are the service's).
    """

    def __init__(self, region: str, client: Any) -> None:
        self._region = region
        self._client = client

    def invoke(self, **parameters: Any) -> dict[str, Any]:
        from moto.awslambda_simple.models import lambda_simple_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        if set(parameters) - {"FunctionName", "Payload", "InvocationType", "Qualifier"}:
            return dict(self._client.invoke(**parameters))
        name = str(parameters["FunctionName"])
        region, account = self._region, DEFAULT_ACCOUNT_ID
        if name.startswith("arn:"):  # arn:aws:lambda:region:account:function:name[:qualifier]
            region, account = name.split(":")[3:5]
        invocation = str(parameters.get("InvocationType") or "RequestResponse")
        payload = parameters.get("Payload")
        body = payload if isinstance(payload, bytes | str) or payload is None else payload.read()
        response_headers: dict[str, str] = {}
        try:
            answer = LambdaSimpleBackend.invoke(
                lambda_simple_backends[account][region], name, parameters.get("Qualifier"), body,
                {"X-Amz-Invocation-Type": invocation}, response_headers,
            )  # fmt: skip
        except UnknownFunctionException:
            return dict(self._client.invoke(**parameters))
        data = answer.encode("utf-8") if isinstance(answer, str) else bytes(answer or b"")
        result: dict[str, Any] = {"StatusCode": 202 if invocation == "Event" else 200,
                                  "ExecutedVersion": "$LATEST", "Payload": io.BytesIO(data)}  # fmt: skip
        if "x-amz-function-error" in response_headers:
            result["FunctionError"] = response_headers["x-amz-function-error"]
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


# moto's ASL interpreter parses a JSONPath (building a new PLY parser each time) on every evaluation,
# and deep-copies each state's input and output with copy.deepcopy: together about half of a local
# rollout's interpreter CPU. While the engine runs, parsed paths are kept (a parsed path is only read)
# and those copies of JSON values use a copier that knows JSON's few types.
_JSONPATH_PARSERS = (
    "moto.stepfunctions.parser.asl.utils.json_path",
    "moto.stepfunctions.parser.asl.component.common.path.result_path",
)
_JSON_COPIERS = (
    "moto.stepfunctions.parser.asl.eval.states",
    "moto.stepfunctions.parser.asl.component.common.string.string_expression",
    "moto.stepfunctions.parser.asl.component.common.path.result_path",
    "moto.stepfunctions.parser.asl.component.state.exec.execute_state",
)
_ATOMS = (str, int, float, bool, type(None))


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, atoms); anything else goes to `copy.deepcopy`."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)


class FastInterpreter:
    """Cached JSONPath parsing and JSON copies in moto's interpreter: installed by start, removed by stop."""

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for name in _JSONPATH_PARSERS:
            module = importlib.import_module(name)
            original = module.__dict__.get("parse")
            if original is None:
                raise MotoCompatibilityError(f"{name}.parse is missing (pin moto==5.2.*)")
            self._originals.append((module, "parse", original))
            module.parse = functools.lru_cache(maxsize=4096)(original)  # type: ignore[attr-defined]
        shim = types.SimpleNamespace(deepcopy=copy_json, copy=copy.copy)
        for name in _JSON_COPIERS:
            module = importlib.import_module(name)
            if module.__dict__.get("copy") is not copy:
                raise MotoCompatibilityError(f"{name} no longer imports copy (pin moto==5.2.*)")
            self._originals.append((module, "copy", copy))
            module.copy = shim  # type: ignore[attr-defined]

    def remove(self) -> None:
        for module, attribute, original in reversed(self._originals):
            setattr(module, attribute, original)
        self._originals.clear()
