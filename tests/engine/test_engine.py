"""The local engine runs real ASL on moto's interpreter and dispatches Lambda tasks to Python handlers."""

from __future__ import annotations

import json
import os
import queue
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend

from upgradectl.local import moto_patches
from upgradectl.local.asl_definitions import UnresolvedSubstitutionError, function_name_from, substitution_key
from upgradectl.local.engine import LocalStepFunctions
from upgradectl.local.functions import ANALYSIS_FUNCTIONS, WORKER_FUNCTIONS
from upgradectl.local.lambda_runtime import Handler
from upgradectl.local.moto_patches import MotoCompatibilityError, check_moto_compat, copy_json


class TransientThing(Exception):
    pass


class PermanentThing(Exception):
    pass


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def run(engine: LocalStepFunctions, definition: dict[str, Any], payload: Any, timeout: float = 60.0) -> dict:
    machine = engine.create_state_machine_from_definition(unique("sm"), definition)
    execution = engine.sfn.start_execution(stateMachineArn=machine, name=unique("ex"), input=json.dumps(payload))[
        "executionArn"
    ]
    return engine.wait_for_execution(execution, timeout=timeout)


def task(resource: str, **extra: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": resource, **extra}


# -- handlers ------------------------------------------------------------------------------------------
def double(event: dict, context: Any) -> dict:
    return {"value": event["value"] * 2, "function": context.function_name}


def describe_context(event: dict, context: Any) -> dict:
    return {
        "function_name": context.function_name,
        "aws_request_id": context.aws_request_id,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
    }


class Flaky:
    """Raises TransientThing ``failures`` times, then succeeds; counts calls (thread-safe enough: GIL)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict] = []

    def __call__(self, event: dict, context: Any) -> dict:
        self.calls.append(event)
        if len(self.calls) <= self.failures:
            raise TransientThing(f"attempt {len(self.calls)} failed")
        return {"ok": True, "attempts": len(self.calls)}


def always_permanent(event: dict, context: Any) -> dict:
    raise PermanentThing("customer 42 has no release")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict, context: Any) -> dict:
        with self.lock:
            self.seen.append(event)
        return {"customerId": event["customerId"], "status": "succeeded"}


@pytest.fixture
def flaky() -> Flaky:
    return Flaky(failures=2)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def tokens() -> queue.Queue:
    return queue.Queue()


@pytest.fixture
def engine(flaky: Flaky, recorder: Recorder, tokens: queue.Queue) -> Iterator[LocalStepFunctions]:
    def await_token(event: dict, context: Any) -> None:
        tokens.put(event["token"])

    handlers: dict[str, Handler] = {
        "double": double,
        "describe_context": describe_context,
        "flaky": flaky,
        "always_permanent": always_permanent,
        "upgrade_customer": recorder,
        "await_token": await_token,
    }
    with LocalStepFunctions(handlers) as local:
        yield local


# -- tests ---------------------------------------------------------------------------------------------
def test_task_result_flows_through_plain_function_arn(engine: LocalStepFunctions) -> None:
    definition = {"StartAt": "Double", "States": {"Double": task(engine.function_arn("double"), End=True)}}

    result = run(engine, definition, {"value": 21})

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"value": 42, "function": "double"}


def test_task_result_flows_through_lambda_invoke_integration(engine: LocalStepFunctions) -> None:
    definition = {
        "StartAt": "Double",
        "States": {
            "Double": task(
                "arn:aws:states:::lambda:invoke",
                Parameters={"FunctionName": engine.function_arn("double"), "Payload.$": "$"},
                OutputPath="$.Payload",
                End=True,
            )
        },
    }

    result = run(engine, definition, {"value": 5})

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"value": 10, "function": "double"}


def test_handler_gets_a_lambda_like_context(engine: LocalStepFunctions) -> None:
    definition = {
        "StartAt": "Describe",
        "States": {"Describe": task(engine.function_arn("describe_context"), End=True)},
    }

    output = json.loads(run(engine, definition, {})["output"])

    assert output["function_name"] == "describe_context"
    assert output["invoked_function_arn"] == engine.function_arn("describe_context")
    assert output["memory_limit_in_mb"] > 0
    assert output["remaining"] > 0
    uuid.UUID(output["aws_request_id"])


@pytest.mark.parametrize("integration", ["function_arn", "lambda_invoke"])
def test_transient_error_is_retried_by_its_class_name(
    engine: LocalStepFunctions, flaky: Flaky, integration: str
) -> None:
    retry = [{"ErrorEquals": ["TransientThing"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 1.0}]
    if integration == "function_arn":
        state = task(engine.function_arn("flaky"), Retry=retry, End=True)
    else:
        state = task(
            "arn:aws:states:::lambda:invoke",
            Parameters={"FunctionName": engine.function_arn("flaky"), "Payload.$": "$"},
            OutputPath="$.Payload",
            Retry=retry,
            End=True,
        )

    result = run(engine, {"StartAt": "Flaky", "States": {"Flaky": state}}, {"n": 1})

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"ok": True, "attempts": 3}
    assert len(flaky.calls) == 3


@pytest.mark.parametrize("integration", ["function_arn", "lambda_invoke"])
def test_permanent_error_goes_to_catch_with_class_name_as_error(engine: LocalStepFunctions, integration: str) -> None:
    retry = [{"ErrorEquals": ["TransientThing"], "IntervalSeconds": 1, "MaxAttempts": 3}]
    catch = [{"ErrorEquals": ["PermanentThing"], "ResultPath": "$.error", "Next": "Failed"}]
    if integration == "function_arn":
        state = task(engine.function_arn("always_permanent"), Retry=retry, Catch=catch, End=True)
    else:
        state = task(
            "arn:aws:states:::lambda:invoke",
            Parameters={"FunctionName": engine.function_arn("always_permanent"), "Payload.$": "$"},
            Retry=retry,
            Catch=catch,
            End=True,
        )
    definition = {"StartAt": "Work", "States": {"Work": state, "Failed": {"Type": "Pass", "End": True}}}

    result = run(engine, definition, {"customerId": "42"})

    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["customerId"] == "42"
    assert output["error"]["Error"] == "PermanentThing"
    cause = json.loads(output["error"]["Cause"])
    assert cause["errorType"] == "PermanentThing"
    assert cause["errorMessage"] == "customer 42 has no release"
    assert isinstance(cause["stackTrace"], list)


def test_uncaught_error_fails_the_execution_with_class_name(engine: LocalStepFunctions) -> None:
    definition = {"StartAt": "Work", "States": {"Work": task(engine.function_arn("always_permanent"), End=True)}}

    result = run(engine, definition, {})

    assert result["status"] == "FAILED"
    assert result["error"] == "PermanentThing"


def test_distributed_map_reads_s3_manifest_and_calls_handler_per_item(
    engine: LocalStepFunctions, recorder: Recorder
) -> None:
    customers = [{"customerId": f"c{i:03d}", "namespace": f"customer-c{i:03d}"} for i in range(12)]
    key = f"manifests/{unique('upgrade')}/wave-0.json"
    engine.s3.put_object(Bucket=engine.bucket, Key=key, Body=json.dumps(customers).encode())
    definition = {
        "StartAt": "RunWave",
        "States": {
            "RunWave": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"},
                },
                "ItemSelector": {"customerId.$": "$$.Map.Item.Value.customerId", "upgradeId.$": "$.upgradeId"},
                "MaxConcurrency": 4,
                "ToleratedFailurePercentage": 100.0,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "UpgradeCustomer",
                    "States": {"UpgradeCustomer": task(engine.function_arn("upgrade_customer"), End=True)},
                },
                "ResultPath": "$.results",
                "End": True,
            }
        },
    }

    result = run(engine, definition, {"bucket": engine.bucket, "key": key, "upgradeId": "u-1"}, timeout=60)

    assert result["status"] == "SUCCEEDED"
    assert sorted(event["customerId"] for event in recorder.seen) == [c["customerId"] for c in customers]
    assert {event["upgradeId"] for event in recorder.seen} == {"u-1"}
    output = json.loads(result["output"])
    assert len(output["results"]) == len(customers)
    map_runs = engine.sfn.list_map_runs(executionArn=result["executionArn"])["mapRuns"]
    assert len(map_runs) == 1


def test_wait_for_task_token_is_released_from_the_test_thread(engine: LocalStepFunctions, tokens: queue.Queue) -> None:
    definition = {
        "StartAt": "AwaitContinue",
        "States": {
            "AwaitContinue": task(
                "arn:aws:states:::lambda:invoke.waitForTaskToken",
                Parameters={
                    "FunctionName": engine.function_arn("await_token"),
                    "Payload": {"token.$": "$$.Task.Token", "upgradeId.$": "$.upgradeId"},
                },
                ResultPath="$.approval",
                End=True,
            )
        },
    }
    machine = engine.create_state_machine_from_definition(unique("sm"), definition)
    execution = engine.sfn.start_execution(
        stateMachineArn=machine, name=unique("ex"), input=json.dumps({"upgradeId": "u-7"})
    )["executionArn"]

    token = tokens.get(timeout=60)
    assert engine.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    engine.sfn.send_task_success(taskToken=token, output=json.dumps({"approvedBy": "sre"}))
    result = engine.wait_for_execution(execution, timeout=60)

    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"upgradeId": "u-7", "approval": {"approvedBy": "sre"}}


def test_create_state_machine_substitutes_definition_file(engine: LocalStepFunctions, tmp_path: Path) -> None:
    asl = tmp_path / "double.asl.json"
    asl.write_text(
        json.dumps(
            {
                "StartAt": "Double",
                "States": {
                    "Double": task(
                        "${DoubleFunctionArn}",
                        ResultSelector={"value.$": "$.value", "bucket": "${ManifestBucket}"},
                        End=True,
                    )
                },
            }
        )
    )
    substitutions = engine.substitutions_for(["double"])

    machine = engine.create_state_machine(unique("sm"), asl, substitutions)
    execution = engine.start_execution(machine, {"value": 4}, name=unique("ex"))
    result = engine.wait_for_execution(execution, timeout=60)

    assert substitutions == {"DoubleFunctionArn": engine.function_arn("double"), "ManifestBucket": engine.bucket}
    assert json.loads(result["output"]) == {"value": 8, "bucket": engine.bucket}


def test_create_state_machine_rejects_unresolved_placeholders(engine: LocalStepFunctions, tmp_path: Path) -> None:
    asl = tmp_path / "missing.asl.json"
    asl.write_text(json.dumps({"StartAt": "A", "States": {"A": task("${NotProvidedFunctionArn}", End=True)}}))

    with pytest.raises(UnresolvedSubstitutionError, match="NotProvidedFunctionArn"):
        engine.create_state_machine(unique("sm"), asl, engine.substitutions_for())


def test_substitution_keys_follow_template_logical_ids() -> None:
    assert substitution_key("prepare_run") == "PrepareRunFunctionArn"
    assert substitution_key("start_helm_job") == "StartHelmJobFunctionArn"


def test_function_name_from_arn_and_qualified_name() -> None:
    assert function_name_from("arn:aws:lambda:us-east-1:123456789012:function:prepare_run") == "prepare_run"
    assert function_name_from("arn:aws:lambda:us-east-1:123456789012:function:prepare_run:$LATEST") == "prepare_run"
    assert function_name_from("prepare_run:live") == "prepare_run"


def test_signature_guard_accepts_installed_moto() -> None:
    check_moto_compat()


def test_signature_guard_fails_loudly_when_moto_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    def invoke(self: Any, function_name: str, qualifier: str, body: Any) -> bytes:  # a future, different shape
        return b"{}"

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)

    with pytest.raises(MotoCompatibilityError, match="signature"):
        check_moto_compat()
    with pytest.raises(MotoCompatibilityError):
        LocalStepFunctions({"double": double}).start()
    assert LambdaSimpleBackend.__dict__["invoke"] is invoke


def test_stop_restores_original_invoke_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    original = LambdaSimpleBackend.__dict__["invoke"]
    local = LocalStepFunctions({"double": double})

    local.start()
    assert LambdaSimpleBackend.__dict__["invoke"] is not original
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    local.stop()

    assert LambdaSimpleBackend.__dict__["invoke"] is original
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    assert "AWS_DEFAULT_REGION" not in os.environ
    assert not local.started


def test_second_engine_in_same_process_is_refused(engine: LocalStepFunctions) -> None:
    with pytest.raises(RuntimeError, match="another LocalStepFunctions"):
        LocalStepFunctions({"double": double}).start()


def test_module_exports_are_stable() -> None:
    assert moto_patches.EXPECTED_INVOKE_PARAMETERS == (
        "self",
        "function_name",
        "qualifier",
        "body",
        "headers",
        "response_headers",
    )


WORKERS = (*WORKER_FUNCTIONS, *ANALYSIS_FUNCTIONS)


def test_real_state_machine_definitions_parse_with_template_substitutions() -> None:
    # sam validate --lint does not look inside the ASL; moto's executing parser does.
    definitions = sorted((Path(__file__).resolve().parents[2] / "statemachine").glob("*.asl.json"))
    assert definitions, "no statemachine/*.asl.json"

    def unused(event: dict, context: Any) -> None:
        raise AssertionError("not executed by this test")

    with LocalStepFunctions(dict.fromkeys(WORKERS, unused)) as local:
        for path in definitions:
            arn = local.create_state_machine(unique("parse"), path, local.substitutions_for(WORKERS))
            assert arn.startswith("arn:aws:states:")


def test_json_copies_are_deep_and_keep_other_types_to_deepcopy() -> None:
    original: dict[str, Any] = {"job": {"phase": "running", "waves": [1, [2, 3]]}, "n": 1.5, "none": None}
    copied = copy_json(original)
    copied["job"]["waves"][1].append(4)
    copied["job"]["phase"] = "done"
    assert original == {"job": {"phase": "running", "waves": [1, [2, 3]]}, "n": 1.5, "none": None}
    odd = (["a"],)  # not JSON: copy.deepcopy's job
    assert copy_json(odd) == odd and copy_json(odd)[0] is not odd[0]


def test_stop_restores_the_interpreter_parts_it_sped_up() -> None:
    from moto.stepfunctions.parser.asl.eval import states
    from moto.stepfunctions.parser.asl.utils import json_path

    parse, copier = json_path.parse, states.copy
    with LocalStepFunctions({}):
        assert json_path.parse is not parse and states.copy is not copier
        assert json_path.parse("$.a.b") is json_path.parse("$.a.b")  # parsed once, then kept
    assert json_path.parse is parse and states.copy is copier
