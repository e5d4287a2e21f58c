"""Cold starts per function in the Lambda runtime's shape: the handler module's import inside the Lambda image.

SAM's runtime interface emulator reports no useful Init Duration (it starts the runtime on the first invoke and
reports about 0.1 ms; the import lands in Duration, together with the handler's work). So this measures the init
phase's own work directly: for each function, a fresh container of the Lambda base image (`make sam-local-image`'s
stand-in, or the real one) with the function's built code in /var/task and its layers in /opt/python, as SAM
mounts them, imports `app` the way the runtime does (after awslambdaric, with the runtime's sys.path) and reports
the import's wall and CPU milliseconds; median of --repeat containers. Next to it, for every function, the cold
import against its libraries' floor that `make bench` reports (`benchmarks.imports`, this machine's interpreter).

    .venv/bin/python -m benchmarks.cold_starts                                   # this build (.aws-sam/build)
    .venv/bin/python -m benchmarks.cold_starts --before-build /tmp/old/.aws-sam/build --before-python 3.11

Not a test: nothing here asserts a time (a busy shared machine moves the figures; before and after are measured
in the same run, interleaved).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks import ROOT, imports

# Run inside the image: the runtime's start (awslambdaric loaded, sys.path as the bootstrap sets it), then the
# handler module's import, timed; one JSON line.
_IMPORT = """
import json, sys, time
sys.path[:0] = ["/var/task", "/opt/python/lib/python%d.%d/site-packages" % sys.version_info[:2], "/opt/python"]
sys.path.insert(3, "/var/runtime")
import awslambdaric.bootstrap
began, cpu = time.perf_counter(), time.process_time()
import app
print(json.dumps({"ms": (time.perf_counter() - began) * 1000, "cpu_ms": (time.process_time() - cpu) * 1000}))
"""
_ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "customer-upgrades",
        "POWERTOOLS_LOG_LEVEL": "WARNING", "LAMBDA_TASK_ROOT": "/var/task"}  # fmt: skip


# Root containers on these machines need the limits and runtime SAM's podman service gets (upgradectl.samlocal.engine).
PODMAN_OPTIONS = {"podman": ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]}
RUN_OPTIONS = {"podman": ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]}


class _Tags(yaml.SafeLoader):
    """A built template.yaml: !Ref as {"Ref": name}, other short tags as None."""


_Tags.add_constructor("!Ref", lambda loader, node: {"Ref": loader.construct_scalar(node)})  # type: ignore[arg-type]
_Tags.add_multi_constructor("!", lambda loader, suffix, node: None)


@dataclass
class Case:
    label: str
    build: Path  # a `sam build` output folder (template.yaml, one folder per function and layer)
    python: str  # the runtime's version: the image public.ecr.aws/lambda/python:<python>-<arch>
    architecture: str = "x86_64"

    @property
    def image(self) -> str:
        return f"public.ecr.aws/lambda/python:{self.python}-{self.architecture}"

    def functions(self) -> dict[str, tuple[Path, list[str]]]:
        """functions/<folder> -> (its built code, the logical ids of its layers)."""
        template = yaml.load((self.build / "template.yaml").read_text(), Loader=_Tags)  # noqa: S506 - SafeLoader
        found = {}
        for logical_id, resource in template["Resources"].items():
            if resource.get("Type") == "AWS::Serverless::Function":
                folder = Path(str(resource["Properties"]["CodeUri"]).rstrip("/")).name
                layers = [layer["Ref"] for layer in resource["Properties"].get("Layers", []) if isinstance(layer, dict)]
                found[_folder_of(logical_id, folder)] = (self.build / folder, layers)
        return found


def _folder_of(logical_id: str, built_folder: str) -> str:
    """The functions/<folder> name of a built function (`sam build` names its folder by the logical id)."""
    ids = {v: k for k, v in _source_ids().items()}
    return ids.get(logical_id, built_folder)


def _source_ids() -> dict[str, str]:
    from upgradectl.samlocal.invoke import function_ids

    return function_ids()


def _opt(case: Case, layers: list[str], cache: dict[tuple[str, ...], Path], tmp: Path) -> Path:
    """The function's /opt: its layers' contents merged, as Lambda extracts them."""
    key = (case.label, *sorted(layers))
    if key not in cache:
        folder = tmp / f"opt-{len(cache)}"
        for layer in layers:
            shutil.copytree(case.build / layer, folder, dirs_exist_ok=True, symlinks=True)
        folder.mkdir(exist_ok=True)
        cache[key] = folder
    return cache[key]


def measure_once(engine: str, case: Case, code: Path, opt: Path) -> dict[str, float]:
    env = [arg for name, value in _ENV.items() for arg in ("-e", f"{name}={value}")]
    pythons = f"/var/lang/bin/python{case.python} /usr/bin/python{case.python}"  # the real image's, Debian's
    launcher = f'for p in {pythons}; do [ -x "$p" ] && exec "$p" -c "$0"; done; exit 127'
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [engine, *PODMAN_OPTIONS.get(Path(engine).name, []), "run", *RUN_OPTIONS.get(Path(engine).name, []), "--rm",
         "--network", "none", "-v", f"{code}:/var/task:ro", "-v", f"{opt}:/opt:ro", *env,
         "--entrypoint", "/bin/sh", case.image, "-c", launcher, _IMPORT],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{case.label} {code.name}: {done.stderr[-800:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(cases: list[Case], repeat: int, engine: str) -> dict[str, dict[str, list[dict[str, float]]]]:
    """label -> function -> the measurements, interleaved (each round: every case, every function)."""
    found: dict[str, dict[str, list[dict[str, float]]]] = {case.label: {} for case in cases}
    cache: dict[tuple[str, ...], Path] = {}
    with tempfile.TemporaryDirectory(prefix="cold-starts-") as tmp:
        plans = {case.label: case.functions() for case in cases}
        for _ in range(repeat):
            for case in cases:
                for function, (code, layers) in sorted(plans[case.label].items()):
                    opt = _opt(case, layers, cache, Path(tmp))
                    found[case.label].setdefault(function, []).append(measure_once(engine, case, code, opt))
    return found


def _median(runs: list[dict[str, float]] | None, key: str) -> str:
    return f"{statistics.median(r[key] for r in runs):.0f}" if runs else "-"


def table(cases: list[Case], found: dict[str, dict[str, list[dict[str, float]]]], costs: dict[str, Any]) -> str:
    names = sorted({f for per in found.values() for f in per} | set(costs))
    header = ["function"]
    for case in cases:
        header += [f"{case.label} import ms", f"{case.label} CPU ms"]
    header.append("import / floor, CPU s (make bench)")
    rows = [header]
    for name in names:
        row = [name]
        for case in cases:
            runs = found[case.label].get(name)
            row += [_median(runs, "ms"), _median(runs, "cpu_ms")]
        cost = costs.get(name)
        row.append(f"{cost.seconds:.2f} / {cost.floor:.2f} = {cost.ratio:.2f}" if cost else "-")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in rows]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from upgradectl.samlocal.lambda_platform import host_architecture, runtime_python

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / ".aws-sam" / "build",
                        help="this build, for this machine's architecture (make sam-invoke leaves one)")  # fmt: skip
    parser.add_argument("--python", default=runtime_python(), help="its runtime's version (default: template.yaml's)")
    parser.add_argument("--before-build", type=Path, help="an earlier build to compare with")
    parser.add_argument("--before-python", help="its runtime's version")
    parser.add_argument("--repeat", type=int, default=3, help="containers per function and build (median)")
    parser.add_argument("--no-floor", action="store_true", help="leave out make bench's import / floor column")
    args = parser.parse_args(argv)
    engine = shutil.which("podman") or shutil.which("docker")
    if engine is None:
        raise SystemExit("needs podman or docker (apt-get install -y podman runc), and make sam-local-image")
    cases = [Case("after", args.build.resolve(), args.python, host_architecture())]
    if args.before_build:
        cases.insert(
            0, Case("before", args.before_build.resolve(), args.before_python or args.python, host_architecture())
        )
    found = run(cases, args.repeat, engine)
    costs = {} if args.no_floor else {cost.function: cost for cost in imports.run(args.repeat)}
    print(table(cases, found, costs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
