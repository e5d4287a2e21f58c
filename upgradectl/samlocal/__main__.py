"""`python -m upgradectl.samlocal image` (make sam-local-image), `... invoke` (make sam-invoke)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from upgradectl.local.functions import ROOT
from upgradectl.samlocal.engine import ContainerEngine, EngineMissing, find_engine
from upgradectl.samlocal.eventcheck import event_problems
from upgradectl.samlocal.expectations import EXPECTED, OVERRIDES, judge
from upgradectl.samlocal.image import StandIn, build_stand_in
from upgradectl.samlocal.invoke import EVENTS, Invocation, invoke_all, plan
from upgradectl.samlocal.lambda_platform import build_environment, host_architecture, runtime_python, sam_build_command

SAM = os.environ.get("SAM_EXECUTABLE") or str(ROOT / ".venv-sam" / "bin" / "sam")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m upgradectl.samlocal")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("image", help="build the stand-in Lambda base image when it is not there")
    serve = commands.add_parser("serve", help="podman's Docker API for SAM, its Lambda containers in the host network")
    serve.add_argument("--mount", type=Path, action="append", default=[],
                       help="a folder every container sees read-only at the same path (the banner's token folder)")  # fmt: skip
    run = commands.add_parser("invoke", help="sam build, then every function with every event through sam local invoke")
    run.add_argument("--events", type=Path, default=EVENTS, help="the folder of event files (default events/)")
    run.add_argument("--no-build", action="store_true", help="use .aws-sam/build as it is")
    run.add_argument("--parallel", type=int, default=3, help="invocations at once in the first stage (default 3)")
    run.add_argument("--report", type=Path, help="write every answer and verdict there as JSON")
    args = parser.parse_args(argv)
    began = time.monotonic()
    invocations = plan(args.events) if args.command == "invoke" else []
    problems = [p for i in invocations for p in event_problems(i.event, i.function, args.events)]
    unexpected = sorted({i.event for i in invocations} - set(EXPECTED))
    problems += [
        f"events/{name}.json: no expected answer in upgradectl/samlocal/expectations.py" for name in unexpected
    ]
    if problems:
        print("sam-local: event files do not match their functions:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    try:
        engine = find_engine()
    except EngineMissing as exc:
        print(f"sam-local: {exc}", file=sys.stderr)
        return 2
    if args.command == "image":
        print(f"sam-local: {StandIn().name}: {build_stand_in(engine)} ({engine.name})")
        return 0
    if args.command == "serve":
        return _serve(engine, args.mount)
    return _invoke(args, engine, invocations, began)


def _invoke(args: argparse.Namespace, engine: ContainerEngine, invocations: list[Invocation], began: float) -> int:
    from upgradectl.samlocal.stack import local_stack  # psycopg: only for a run

    if engine.name != "podman":  # Docker has no way to give SAM's containers the host network: loopback is theirs
        print("sam-local: make sam-invoke needs podman (apt-get install -y podman runc): Docker cannot give SAM's "
              "containers the host network, so they cannot reach the local stack on 127.0.0.1 (docs/howto/"
              "sam-local-invoke.md)", file=sys.stderr)  # fmt: skip
        return 2
    architecture, python = host_architecture(), runtime_python()
    if not args.no_build:  # the layers' wheels for this machine's architecture: its containers run here
        subprocess.run(sam_build_command(SAM, architecture), cwd=ROOT, check=True,  # noqa: S603
                       env=build_environment(architecture, python))  # fmt: skip
    print(f"sam-local: {StandIn().name}: {build_stand_in(engine, log=False)} ({engine.name})", flush=True)
    with tempfile.TemporaryDirectory(prefix="sam-events-") as tmp, local_stack() as stack:
        events = _local_events(args.events, Path(tmp))
        with engine.serving([stack.jobs_token_file.parent]) as served:
            stages = sorted({EXPECTED[i.event].stage for i in invocations})
            done: list[Invocation] = []
            for stage in stages:
                batch = [i for i in invocations if EXPECTED[i.event].stage == stage]
                done += invoke_all(batch, stack, sam=SAM, docker_host=served.docker_host, architecture=architecture,
                                   parallel=args.parallel if stage == 0 else 1, events=events)  # fmt: skip
    for invocation in done:
        invocation.problem = invocation.problem or judge(invocation.answer, EXPECTED[invocation.event])
        verdict = "ok  " if invocation.problem is None else "FAIL"
        print(f"{verdict} {invocation.event:34} {invocation.logical_id:32} {invocation.seconds:5.1f} s"
              + (f"  {invocation.problem}" if invocation.problem else ""))  # fmt: skip
    failed = [i for i in done if i.problem is not None]
    functions = len({i.function for i in done})
    print(f"sam-local: {len(done) - len(failed)}/{len(done)} events answered as expected ({functions} functions, "
          f"{engine.name}) in {time.monotonic() - began:.0f} s")  # fmt: skip
    if args.report:
        args.report.write_text(json.dumps([vars(i) for i in done], indent=1))
    return 1 if failed else 0


def _serve(engine: ContainerEngine, mounts: list[Path]) -> int:
    with engine.serving([m.resolve() for m in mounts]) as served:
        print(f"export DOCKER_HOST={served.docker_host or ''}  # then sam local invoke ... (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def _local_events(source: Path, target: Path) -> Path:
    """The event files with OVERRIDES applied (the CloudFormation response URL on loopback)."""
    for path in source.glob("*.json"):
        event = json.loads(path.read_text())
        event.update(OVERRIDES.get(path.stem, {}))
        (target / path.name).write_text(json.dumps(event))
    return target


if __name__ == "__main__":
    sys.exit(main())
