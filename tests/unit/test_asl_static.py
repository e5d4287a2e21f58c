"""Static rules every statemachine/*.asl.json must keep (moto's parser check is in tests/engine).

- Every Lambda Task retries the transient errors by their class names: the named transient errors of
  our code (every subclass of TransientError, ClusterTransientError) and Lambda's own service errors.
- Every Task of the per-customer child (the Map's ItemProcessor) catches States.ALL into the state that
  records the customer as failed, so one customer never fails the wave.
- Every Task of the parent catches States.ALL: no error ends an execution without a step that tells the
  database (FinalizeRun, or a Fail state the reconciler reacts to).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from upgrader.cluster.types import ClusterTransientError
from upgrader.infra import errors

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = sorted((ROOT / "statemachine").glob("*.asl.json"))
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
    # A Lambda that timed out or died (every task is idempotent, so running it again is safe).
    "Lambda.Unknown",
    "Sandbox.Timedout",
}


def transient_error_names() -> set[str]:
    """ASL matches the error name exactly (no subclassing): every transient class must be listed."""
    names = {
        name for name, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.TransientError)
    }
    return names | {ClusterTransientError.__name__}


def walk(definition: dict[str, Any], inside_map: bool = False):
    """(name, state, inside a Map's item processor, the States block it lives in)."""
    for name, state in definition["States"].items():
        yield name, state, inside_map, definition["States"]
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from walk(state[key], True)
        for branch in state.get("Branches", []):
            yield from walk(branch, inside_map)


def is_lambda_task(state: dict[str, Any]) -> bool:
    resource = str(state.get("Resource", ""))
    return state["Type"] == "Task" and (resource.endswith("FunctionArn}") or ":lambda:" in resource)


def records_failure(state: dict[str, Any]) -> bool:
    """finish_customer records the customer's outcome; given a `failure`, as failed (or skipped)."""
    return state["Type"] == "Task" and str(state.get("Resource", "")) == "${FinishCustomerFunctionArn}"


def failure_read_from(state: dict[str, Any]) -> set[str]:
    """Where the recording state takes the error from: its Parameters, else the whole input's $.failure
    (finish_customer reads event["failure"])."""
    parameters = state.get("Parameters")
    if parameters is None:
        return {"$.failure"}
    return {value for key, value in parameters.items() if key.startswith("failure")}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_definitions_and_our_transient_errors_are_known():
    assert DEFINITIONS
    assert {"TransientError", "DatabaseUnavailable", "WorkflowUnavailable", "ClusterTransientError"} <= (
        transient_error_names()
    )


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_every_lambda_task_retries_the_transient_errors(path):
    wanted = transient_error_names() | LAMBDA_SERVICE_ERRORS
    problems = []
    tasks = [(name, state) for name, state, _, _ in walk(load(path)) if is_lambda_task(state)]
    assert len(tasks) >= 5
    for name, state in tasks:
        retried = {error for rule in state.get("Retry", []) for error in rule["ErrorEquals"]}
        if "States.ALL" in retried:
            problems.append(f"{name}: retries States.ALL (permanent errors must not be retried)")
        missing = wanted - retried
        if missing:
            problems.append(f"{name}: no Retry on {sorted(missing)}")
        for rule in state.get("Retry", []):
            if rule.get("MaxAttempts", 3) < 2 or rule.get("BackoffRate", 2.0) < 1.0:
                problems.append(f"{name}: Retry {rule['ErrorEquals']} too weak: {rule}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_every_child_task_catches_everything_into_the_failure_recording_state(path):
    definition = load(path)
    children = [(name, state, block) for name, state, inside, block in walk(definition) if inside]
    if not children:
        pytest.fail(f"{path.name} has no per-customer item processor")
    problems = []
    for name, state, block in children:
        if state["Type"] != "Task" or records_failure(state):
            continue  # recording the outcome: if that fails after its retries, evaluate_wave closes the row
        catch_all = [rule for rule in state.get("Catch", []) if rule["ErrorEquals"] == ["States.ALL"]]
        if not catch_all:
            problems.append(f"{name}: no Catch on States.ALL")
            continue
        target = block.get(catch_all[-1]["Next"])
        if target is None or not records_failure(target):
            problems.append(f"{name}: Catch goes to {catch_all[-1]['Next']!r}, not the failure-recording state")
            continue
        # the Catch must put the error where the recording state reads it
        read_from = failure_read_from(target)
        if {catch_all[-1].get("ResultPath")} != read_from:
            problems.append(f"{name}: Catch ResultPath {catch_all[-1].get('ResultPath')} but {read_from} is read")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_one_failed_customer_never_fails_the_map(path):
    maps = [state for _, state, _, _ in walk(load(path)) if state["Type"] == "Map"]
    assert maps
    for state in maps:
        assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert state["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"
        assert state.get("ToleratedFailurePercentage") == 100.0
        assert any(rule["ErrorEquals"] == ["States.ALL"] for rule in state.get("Catch", []))


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_no_arns_in_the_definition(path):
    text = path.read_text(encoding="utf-8")
    for fragment in ("arn:aws:lambda:", "arn:aws:states:us-", "arn:aws:s3:::"):
        assert fragment not in text


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_every_parent_task_catches_everything(path):
    definition = load(path)
    problems = []
    for name, state, inside, block in walk(definition):
        if inside or state["Type"] not in ("Task", "Map"):
            continue
        catch_all = [rule for rule in state.get("Catch", []) if rule["ErrorEquals"] == ["States.ALL"]]
        if not catch_all:
            problems.append(f"{name}: no Catch on States.ALL")
            continue
        target = block[catch_all[-1]["Next"]]
        # ... or the analysis gate's: a step that failed is recorded inconclusive (AnalysisInconclusive, whose own
        # failure still goes to the approval gate), and the approval gate waits for a person
        to_a_person = _waits_for_a_person(target) or (
            target.get("Resource") == "${AnalyzeWaveFunctionArn}"
            and target.get("Parameters", {}).get("step") == "crashed"
            and any(rule["ErrorEquals"] == ["States.ALL"] and _waits_for_a_person(block[rule["Next"]])
                    for rule in target.get("Catch", []))
        )  # fmt: skip
        if not (target["Type"] == "Fail" or target.get("Resource") == "${FinalizeRunFunctionArn}"
                or catch_all[-1]["Next"] == "EvaluateWave" or to_a_person):  # fmt: skip
            problems.append(f"{name}: Catch goes to {catch_all[-1]['Next']}, which does not end the run")
    assert not problems, "\n".join(problems)


def _waits_for_a_person(state: dict) -> bool:
    return (
        state["Type"] == "Pass"
        and state.get("Result") == "await_continue"
        and (state.get("ResultPath") == "$.decision" and state.get("Next") == "AwaitContinue")
    )
