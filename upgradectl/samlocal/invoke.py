"""Every function invoked with every file of events/ through `sam local invoke`, against a running local stack.

SAM exits 0 even when the handler raised, so each answer is read from SAM's standard output (the handler's return
value, or the runtime's {errorType, errorMessage}) and judged by `expectations`, never by the exit code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from upgradectl.local.functions import FUNCTIONS, ROOT

EVENTS = ROOT / "events"
TEMPLATE = ROOT / "template.yaml"
ENV_FILE = ROOT / "scripts" / "sam-local" / "env.json"
CLUSTER_LINE = re.compile(
    r"kmock API server at (?P<url>http://127\.0\.0\.1:\d+).*tokens in (?P<jobs>\S+\.token), (?P<reader>\S+\.token)\)"
)
DATABASE_LINE = re.compile(r"PostgreSQL from DATABASE_URL \((?P<conninfo>[^)]*)\)")


class _AnyTag(yaml.SafeLoader):
    """template.yaml with CloudFormation's short tags (!Ref, !Sub, ...) read as plain values."""


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: None)


def function_ids(template: Path = TEMPLATE) -> dict[str, str]:
    """functions/<folder> -> its logical id in the template (CodeUri: functions/<folder>/)."""
    resources = yaml.load(template.read_text(), Loader=_AnyTag)["Resources"]  # noqa: S506 - SafeLoader subclass
    found = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Function":
            code = str(resource["Properties"]["CodeUri"]).rstrip("/")
            found[Path(code).name] = logical_id
    return found


# Event files whose name does not start with their function's folder: the maintenance-window gate's task.
EVENT_FUNCTIONS = {"await_window": "await_continue"}


def function_of(event_name: str, folders: Iterable[str]) -> str:
    """The function an event file is for: the longest function folder its name starts with."""
    if event_name in EVENT_FUNCTIONS:
        return EVENT_FUNCTIONS[event_name]
    matches = [f for f in folders if event_name == f or event_name.startswith(f"{f}_")]
    if not matches:
        raise ValueError(f"events/{event_name}.json names no function folder under functions/")
    return max(matches, key=len)


@dataclass(frozen=True)
class StackEndpoints:
    """Where a running local stack's parts are, read from its banner (the stack is started with DATABASE_URL)."""

    database_url: str
    kube_api_url: str
    jobs_token_file: Path
    reader_token_file: Path

    @classmethod
    def from_banner(cls, banner: str, database_url: str) -> StackEndpoints:
        cluster = CLUSTER_LINE.search(banner)
        if cluster is None or DATABASE_LINE.search(banner) is None:
            raise ValueError(
                "the local stack must run the simulated cluster on PostgreSQL from DATABASE_URL (a SAM container "
                "cannot reach the embedded server's unix socket): DATABASE_URL=postgresql://... make run"
            )
        return cls(database_url, cluster["url"], Path(cluster["jobs"]), Path(cluster["reader"]))

    def env_vars(self, base: Path = ENV_FILE) -> dict[str, Any]:
        """SAM's --env-vars document: the shipped file with this stack's database, cluster URL and tokens."""
        document = json.loads(base.read_text())
        document["Parameters"].update(
            {
                "DATABASE_URL": self.database_url,
                "KUBE_API_URL": self.kube_api_url,
                "KUBE_TOKEN_FILE": str(self.jobs_token_file),
                "KUBE_READER_TOKEN_FILE": str(self.reader_token_file),
            }
        )
        return dict(document)


@dataclass
class Invocation:
    event: str  # events/<event>.json
    function: str  # functions/<function>
    logical_id: str
    answer: Any = None  # the handler's return value, or {errorType, errorMessage}
    seconds: float = 0.0
    output: str = ""  # SAM's standard error (the container's logs), kept for a failure's message
    problem: str | None = None  # why the answer is not the expected one; None: as expected


def parse_answer(stdout: str) -> Any:
    """The handler's answer: the last line of SAM's standard output that is JSON (SAM prints it alone)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    raise ValueError(f"no JSON answer in SAM's output: {stdout[-500:]!r}")


def invoke(
    invocation: Invocation, *, sam: str, env_file: Path, docker_host: str | None, architecture: str,
    events: Path = EVENTS,
) -> Invocation:  # fmt: skip
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", **({"DOCKER_HOST": docker_host} if docker_host else {})}
    began = time.monotonic()
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [sam, "local", "invoke", invocation.logical_id, "--event", str(events / f"{invocation.event}.json"),
         "--env-vars", str(env_file), "--skip-pull-image", "--template", str(ROOT / ".aws-sam" / "build" / "template.yaml"),
         "--parameter-overrides", f"Architecture={architecture}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    invocation.seconds = time.monotonic() - began
    invocation.output = done.stderr
    try:
        invocation.answer = parse_answer(done.stdout)
    except ValueError as exc:
        invocation.problem = str(exc)
    return invocation


def plan(events: Path = EVENTS, ids: Mapping[str, str] | None = None) -> list[Invocation]:
    """One invocation per event file, in the order the files' names sort."""
    ids = dict(ids or function_ids())
    folders = [p.name for p in FUNCTIONS.iterdir() if (p / "app.py").is_file()]
    missing = sorted(set(folders) - set(ids))
    if missing:
        raise ValueError(f"functions without a template resource: {', '.join(missing)}")
    found = []
    for path in sorted(events.glob("*.json")):
        folder = function_of(path.stem, folders)
        found.append(Invocation(path.stem, folder, ids[folder]))
    return found


def invoke_all(
    invocations: list[Invocation], stack: StackEndpoints, *, sam: str, docker_host: str | None, architecture: str,
    parallel: int = 2, events: Path = EVENTS,
) -> list[Invocation]:  # fmt: skip
    """Invoke each (up to `parallel` at once: distinct containers, distinct loopback ports)."""
    with tempfile.TemporaryDirectory(prefix="sam-env-") as tmp:
        env_file = Path(tmp) / "env.json"
        env_file.write_text(json.dumps(stack.env_vars(), indent=2))
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            return list(
                pool.map(
                    lambda i: invoke(
                        i, sam=sam, env_file=env_file, docker_host=docker_host, architecture=architecture, events=events
                    ),
                    invocations,
                )
            )
