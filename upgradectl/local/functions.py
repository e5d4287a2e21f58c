"""Load the Lambda handlers of functions/<name>/app.py in-process, as the Lambda runtime would."""

from __future__ import annotations

import importlib.util
import sys
import threading
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
STATEMACHINE = ROOT / "statemachine" / "upgrade.asl.json"

API_FUNCTIONS = ("api_deploy", "api_upgrades", "api_control", "api_queue", "api_customers", "api_sync")
WORKER_FUNCTIONS = (
    "prepare_run", "prepare_wave", "evaluate_wave", "await_continue", "finalize_run",
    "begin_customer", "start_helm_job", "check_helm_job", "check_rollout", "finish_customer",
)  # fmt: skip

# State machine tasks only of a deploy that asks for them (the analysis gate between waves, docs/analysis.md).
ANALYSIS_FUNCTIONS = ("analyze_wave",)

# Not state machine tasks: run on a schedule / on execution events (EventBridge in AWS, a thread locally).
BACKGROUND_FUNCTIONS = ("reconcile_runs", "sync_customers", "publish_events", "notify_slack")

_modules: dict[tuple[str, int], ModuleType] = {}
_lock = threading.Lock()


def load_function(name: str, instance: int = 0) -> ModuleType:
    """Import functions/<name>/app.py under a unique module name (every folder has an app.py).

    Like a Lambda execution environment, one module instance serves one invocation at a time
    (Powertools' resolver keeps the current event on the app object): concurrent callers use
    distinct `instance` numbers, as concurrent Lambda invocations get distinct environments.
    """
    with _lock:
        if (name, instance) in _modules:
            return _modules[(name, instance)]
        folder = FUNCTIONS / name
        if not (folder / "app.py").is_file():
            raise KeyError(f"no Lambda function folder {folder}")
        module_name = f"lambda_{name}" if instance == 0 else f"lambda_{name}_{instance}"
        sys.path.insert(0, str(folder))  # sibling modules import as top-level, as in Lambda
        try:
            spec = importlib.util.spec_from_file_location(module_name, folder / "app.py")
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(folder))
        _modules[(name, instance)] = module
        return module


class FakeContext:
    """The parts of the Lambda context object our handlers and Powertools read."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def invoke(name: str, event: dict[str, Any], instance: int = 0) -> Any:
    return load_function(name, instance).lambda_handler(event, FakeContext(name))
