"""`make mutants [MODULE=name]`: mutation testing of the modules that carry guarantees (not in CI: too long).

Each module of scripts/mutants.toml is mutated by mutmut in its own copy of the repository under .mutants/
(the working tree is never touched), and every mutant runs against that module's tests only (the map in
scripts/mutants.toml), stopping at the first failure. The figures are printed as one table and each
survivor's diff is written to .mutants/<module>/survivors.txt. While a module runs, never call `mutmut show`
in its copy: it re-reads the source file, mutated at that moment, into mutmut's line table, and the run then
stops with "Attribute Mutant.line is required".
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutants"
# What a copy leaves out: environments, caches, and other copies.
SKIP = shutil.ignore_patterns(
    ".git", ".venv", ".venv-sam", ".mutants", ".aws-sam", ".local", "__pycache__", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", "*.egg-info", "artifacts", ".hypothesis", ".schemathesis",
)  # fmt: skip
STATUSES = ("killed", "survived", "timeout", "suspicious", "skipped")
# pytest, with every failure reported as exit status 1: mutmut 2.5.1 counts only status 1 as "the tests
# failed", so a mutant that stops the module from importing (pytest's status 2, a collection error, e.g.
# a module-level SQL string replaced by None) would be reported as a survivor.
PYTEST_FAILS_AS_1 = "import sys, pytest; sys.exit(1 if pytest.main(sys.argv[1:]) else 0)"


def modules() -> dict[str, dict[str, Any]]:
    with (ROOT / "scripts" / "mutants.toml").open("rb") as f:
        return dict(tomllib.load(f)["modules"])


def fresh_copy(name: str) -> Path:
    """The module's copy of the working tree, made anew each run (mutmut 2's cache cannot always follow a
    copy that changed, so every mutant is tested again: a run of one module is the cheap rerun)."""
    copy = WORK / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(ROOT, copy, ignore=SKIP)
    return copy


def mutmut(copy: Path, *args: str, capture: bool = True) -> str:
    """mutmut in the copy, which imports the copy's code (never the working tree's)."""
    env = {**os.environ, "PYTHONPATH": f"{copy / 'layers' / 'shared'}{os.pathsep}{copy}",
           # a test process per mutant: load only the plugins the module's tests name (`plugins`), not every
           # installed one (kmock, playwright, ...), which would double each run's start-up
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # fmt: skip
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    return subprocess.run(command, cwd=copy, env=env, text=True, capture_output=capture, check=False).stdout or ""


def run(name: str, module: dict[str, Any]) -> dict[str, int | float]:
    copy = fresh_copy(name)
    source, tests = str(module["source"]), [str(t) for t in module["tests"]]
    plugins = [arg for plugin in module.get("plugins", []) for arg in ("-p", str(plugin))]
    runner = shlex.join(
        [sys.executable, "-c", PYTEST_FAILS_AS_1, "-x", "-q", "-p", "no:cacheprovider", *plugins, *tests]
    )
    print(f"== {name}: {source} against {' '.join(tests)}", flush=True)
    started = time.monotonic()
    mutmut(copy, "run", "--paths-to-mutate", source, "--tests-dir", "tests", "--runner", runner, "--no-progress",
           "--simple-output", capture=False)  # fmt: skip
    seconds = time.monotonic() - started
    figures: dict[str, int | float] = {"seconds": round(seconds)}
    survivors = []
    for status in STATUSES:
        ids = mutmut(copy, "result-ids", status).split()
        figures[status] = len(ids)
        if status in ("survived", "suspicious", "timeout"):
            survivors += [f"-- {status} #{i}\n{mutmut(copy, 'show', i)}" for i in ids]
    (copy / "survivors.txt").write_text("\n".join(survivors))
    figures["mutants"] = sum(int(figures[s]) for s in STATUSES)
    return figures


def main(argv: list[str]) -> int:
    known = modules()
    wanted = argv or list(known)
    unknown = [m for m in wanted if m not in known]
    if unknown:
        print(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    WORK.mkdir(exist_ok=True)
    results = {name: run(name, known[name]) for name in wanted}
    print(f"\n{'module':<16}{'mutants':>8}{'killed':>8}{'survived':>9}{'timeout':>8}{'suspicious':>11}{'seconds':>8}")
    for name, f in results.items():
        print(f"{name:<16}{f['mutants']:>8}{f['killed']:>8}{f['survived']:>9}{f['timeout']:>8}{f['suspicious']:>11}"
              f"{f['seconds']:>8}")  # fmt: skip
    print(f"survivors' diffs: {WORK}/<module>/survivors.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
