"""Cold import of each Lambda function against its libraries' floor.

For each functions/<name>/app.py, a fresh interpreter imports it (the Lambda cold start's init phase,
without the runtime's own start-up; CPU seconds, so a busy machine does not skew it). Its floor is a fresh interpreter running only the import
statements of libraries (standard library and third-party, not the project's own modules) that the
function's code runs at import time: app.py and every project module it loads, module level only. The
ratio (function / floor) is what the project's own code adds; 1.0 = nothing. Median of `repeat`.
"""

from __future__ import annotations

import ast
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
SHARED = ROOT / "layers" / "shared"

_IMPORT_APP = """
import json, sys, time
began = time.process_time()
import app
seconds = time.process_time() - began
own = sorted(getattr(m, "__file__", None) or "" for m in list(sys.modules.values()))
print(json.dumps({"seconds": seconds, "files": [f for f in own if f.startswith(%r)]}))
"""

_IMPORT_FLOOR = """
import json, time
began = time.process_time()
%s
print(json.dumps({"seconds": time.process_time() - began}))
"""


@dataclass
class ImportCost:
    function: str
    seconds: float
    floor: float
    libraries: list[str]

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor if self.floor else float("inf")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "customer-upgrades",
                "POWERTOOLS_LOG_LEVEL": "WARNING", "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    return env


def _run(code: str, folder: Path) -> dict:
    path = os.pathsep.join(str(p) for p in (folder, SHARED))
    env = _env()
    env["PYTHONPATH"] = path
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def library_imports(files: list[str]) -> list[str]:
    """The module-level import statements of these project files that import libraries."""
    own = {"upgrader", "app"} | {p.stem for f in files for p in [Path(f)]}
    statements: list[str] = []
    for file in files:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"))
        for node in _module_level(tree.body):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.split(".")[0] not in own]
                statements += [f"import {name}" for name in names]
            elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                  and node.module.split(".")[0] not in own and node.module != "__future__"):  # fmt: skip
                statements.append(ast.unparse(node))
    return sorted(set(statements))


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import: the body, and inside top-level if/try blocks (not functions or classes)."""
    found: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            found += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _module_level(node.body)
        else:
            found.append(node)
    return found


def measure(name: str, repeat: int = 3) -> ImportCost:
    folder = FUNCTIONS / name
    roots = (str(folder), str(SHARED))
    first = _run(_IMPORT_APP % "/", folder)
    statements = library_imports([f for f in first["files"] if f.startswith(roots)])
    app_runs, floor_runs = [first["seconds"]], []
    for index in range(repeat):  # interleaved: both see the same machine
        floor_runs.append(_run(_IMPORT_FLOOR % "\n".join(statements), folder)["seconds"])
        if index:
            app_runs.append(_run(_IMPORT_APP % "/", folder)["seconds"])
    return ImportCost(name, statistics.median(app_runs), statistics.median(floor_runs), statements)


def run(repeat: int = 3) -> list[ImportCost]:
    return [measure(folder.name, repeat) for folder in sorted(FUNCTIONS.iterdir()) if (folder / "app.py").is_file()]


if __name__ == "__main__":
    for cost in run(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(f"{cost.function:<20}{cost.seconds:>7.2f}{cost.floor:>7.2f}{cost.ratio:>6.2f}")
