"""The console's wave labels and failure budgets come from the strategies' registry (upgrader.contract.strategies)
through /console/strategies.js, and its arithmetic (upgradectl/console/static/waves.js) agrees with the server's
rule (`planner.tolerated_failures`), run under node on the same cases (issue 24, item 2)."""

from __future__ import annotations

import json
import subprocess
from itertools import product
from pathlib import Path
from typing import Any

from upgrader.contract.strategies import REGISTRY
from upgrader.rollout.planner import tolerated_failures

from tests.support.tools import require_tool
from upgradectl import console

WAVES_JS = Path(console.__file__).parent / "static" / "waves.js"
THRESHOLDS = [None, {}, {"count": 0}, {"count": 3}, {"percent": 0}, {"percent": 18.4}, {"percent": 30},
              {"percent": 33.3}, {"percent": 0.1}, {"percent": 100}, {"percent": 1e-7}]  # fmt: skip
SIZES = [0, 1, 7, 9, 375, 1000, 9999]
LABELS = {
    "all": ["all", "all"],
    "canary": ["canary", "rest"],
    "batch": ["batch", "batch"],
    "progressive": ["step", "step"],
}


def _run_node(tmp_path: Path, cases: list[list[Any]]) -> list[list[Any]]:
    node = require_tool("node")
    (tmp_path / "strategies.mjs").write_text(console.asset(console.STRATEGIES_PATH).body.decode())  # type: ignore[union-attr]
    (tmp_path / "waves.mjs").write_text(WAVES_JS.read_text())
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = """
import { readFileSync } from "node:fs";
import { STRATEGIES } from "./strategies.mjs";
import { tolerated, waveLabel } from "./waves.mjs";
const cases = JSON.parse(readFileSync("./cases.json", "utf8"));
console.log(JSON.stringify(cases.map(([s, w, n, t]) => [tolerated(STRATEGIES, s, w, n, t), waveLabel(STRATEGIES, s, w)])));
"""
    (tmp_path / "run.mjs").write_text(script)
    done = subprocess.run([node, "run.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_console_tolerates_what_the_server_tolerates_and_names_the_waves_by_strategy(tmp_path):
    """Breakage tried: waves.js's percentage in floating point (`Math.floor(size * percent / 100)`: 375 x 18.4
    tolerates 68, the server 69); the canary's wavesWithoutFailures left out of the generated table (its first
    wave tolerated 3); the console's old labels (a progressive wave called "all")."""
    cases: list[list[Any]] = [[s, w, n, t] for s, w, n, t in product(REGISTRY.names(), (0, 1), SIZES, THRESHOLDS)]
    results = _run_node(tmp_path, cases)
    assert [r[0] for r in results] == [tolerated_failures(s, w, n, t) for s, w, n, t in cases]  # type: ignore[arg-type]
    assert {(s, w): r[1] for (s, w, _, _), r in zip(cases, results, strict=True)} == {
        (s, w): LABELS[s][w] for s in LABELS for w in (0, 1)
    }


def test_the_page_serves_the_generated_table():
    found = console.asset(console.STRATEGIES_PATH)
    assert found is not None and found.content_type.startswith("text/javascript")
    assert console.is_console_path(console.STRATEGIES_PATH)
    assert '"canary": {' in found.body.decode() and '"wavesWithoutFailures": [\n      0\n    ]' in found.body.decode()
