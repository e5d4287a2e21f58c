"""`--analysis FILE.json`: the file's object sent as the deploy's (and the plan's) `analysis`; a file that
cannot be read or is not a JSON object refused before anything is sent; the plan's measurements printed."""

from __future__ import annotations

import json
from typing import Any

from tests.cli.test_fleet_cli import DEPLOY, STARTED, run

ANALYSIS = {"checks": [{"name": "error-rate", "provider": "prometheus", "query": "sum(rate(app_errors_total[1m]))",
                        "judgement": {"kind": "comparison"}}], "onPass": "await"}  # fmt: skip


def test_the_file_is_sent_as_the_deploys_analysis(fake_api, tmp_path):
    path = tmp_path / "analysis.json"
    path.write_text(json.dumps(ANALYSIS))
    fake_api.responder = lambda m, p, b: (202, STARTED)
    code, _, err = run(fake_api, *DEPLOY, "--analysis", str(path))
    assert code == 0, err
    assert fake_api.requests[0].body["analysis"] == ANALYSIS


def test_a_file_that_is_not_a_json_object_is_refused_before_anything_is_sent(fake_api, tmp_path):
    for name, text in (("list.json", "[1]"), ("broken.json", "{checks")):
        path = tmp_path / name
        path.write_text(text)
        code, _, err = run(fake_api, *DEPLOY, "--analysis", str(path))
        assert code == 2 and f"--analysis {path}" in err
    code, _, err = run(fake_api, *DEPLOY, "--analysis", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
    assert fake_api.requests == []


def test_the_dry_run_prints_each_querys_value_or_error(fake_api, tmp_path):
    path = tmp_path / "analysis.json"
    path.write_text(json.dumps(ANALYSIS))
    plan: dict[str, Any] = {"message": "Canary upgrade would start for 1 customer", "waves": [], "leftOut": [], "leftOutCounts": {},
            "activeUpgrade": None,
            "analysis": {"onPass": "await", "rounds": 3, "intervalSeconds": 60, "controlSample": 20, "measurements": [
                {"check": "error-rate", "cohort": "upgraded", "customerId": "cust_0001", "value": 0.004, "error": None},
                {"check": "error-rate", "cohort": "control", "customerId": "cust_0002", "value": None,
                 "error": "no series"}]}}  # fmt: skip
    fake_api.responder = lambda m, p, b: (200, plan)
    code, out, _ = run(fake_api, *DEPLOY, "--analysis", str(path), "--dry-run")
    assert code == 0 and fake_api.requests[0].body["analysis"] == ANALYSIS
    assert "3 round(s) 60 s apart" in out and "on pass: await" in out
    assert "cust_0001" in out and "0.004" in out
    assert "cust_0002" in out and "no value (no series)" in out
