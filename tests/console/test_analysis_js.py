"""The console's analysis charts (upgradectl/console/static/analysis.js), run under node: each customer's mean
over its rounds by cohort, a chart per check with the wave's verdict, every API value escaped."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.tools import require_tool
from upgradectl import console

ANALYSIS_JS = Path(console.__file__).parent / "static" / "analysis.js"
HOSTILE = '<img src=x onerror="alert(1)">'


def run_node(tmp_path: Path, analysis: dict[str, Any]) -> dict[str, Any]:
    node = require_tool("node")
    (tmp_path / "analysis.mjs").write_text(ANALYSIS_JS.read_text())
    (tmp_path / "input.json").write_text(json.dumps(analysis))
    (tmp_path / "run.mjs").write_text("""
import { readFileSync } from "node:fs";
import { analysisCharts, analysisFacts, cohortMeans } from "./analysis.mjs";
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const analysis = JSON.parse(readFileSync("./input.json", "utf8"));
console.log(JSON.stringify({ means: cohortMeans(analysis.measurements), html: analysisCharts(analysis, esc),
                              facts: analysisFacts(analysis.state, esc) }));
""")
    done = subprocess.run([node, "run.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def m(customer: str, cohort: str, value: float | None, check: str = "error-rate") -> dict[str, Any]:
    return {"check": check, "customerId": customer, "cohort": cohort, "value": value}


def test_each_customers_mean_by_cohort_and_a_chart_per_check_with_the_verdict(tmp_path):
    analysis = {
        "checks": ["error-rate", HOSTILE],
        "waves": [{"wave": 0, "verdict": "fail", "reason": HOSTILE,
                   "checks": [{"check": "error-rate", "verdict": "fail", "reason": "p = 0.001"}]}],
        "measurements": [m("c1", "upgraded", 0.03), m("c1", "upgraded", 0.05), m("c2", "upgraded", None),
                         m("k1", "control", 0.005), m("k2", "control", 0.004), m("k1", "control", 0.007)],
    }  # fmt: skip
    shown = run_node(tmp_path, analysis)
    means = shown["means"]["error-rate"]
    assert means["upgraded"] == [["c1", 0.04]]  # c2 had no value: not drawn
    assert [c for c, _ in means["control"]] == ["k1", "k2"] and abs(means["control"][0][1] - 0.006) < 1e-12
    html = shown["html"]
    assert html.count("<figure") == 2 and html.count('class="upgraded"') == 1 and html.count('class="control"') == 2
    assert "upgraded (1)" in html and "control (2)" in html and "Wave 1: <strong>fail</strong>" in html
    assert 'cx="98.00%"' in html  # the highest mean at the right end of the scale
    assert "<img" not in html and "&lt;img src=x" in html


def test_no_checks_no_charts(tmp_path):
    assert run_node(tmp_path, {"checks": [], "waves": [], "measurements": []})["html"] == ""


def test_the_status_analysis_and_a_wave_rolled_back_by_itself_are_facts(tmp_path):
    empty: dict[str, Any] = {"checks": [], "waves": [], "measurements": []}
    assert run_node(tmp_path, empty)["facts"] == []
    passed = run_node(tmp_path, {**empty, "state": {"wave": 0, "verdict": "pass", "rollback": None}})["facts"]
    assert passed == [["Analysis", "wave 1: pass"]]
    failed = run_node(tmp_path, {**empty, "state": {"wave": 1, "verdict": "fail", "rollback": HOSTILE}})["facts"]
    assert failed[0] == ["Analysis", "wave 2: fail"]
    assert failed[1][0] == "Wave rolled back" and failed[1][1].startswith("wave 2 only, by itself (&lt;img src=x")
