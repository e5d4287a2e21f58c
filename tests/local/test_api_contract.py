"""The API contract holds: schemathesis against the local stack finds nothing.

The local stack runs as its own process (the `local_stack` fixture: real handlers, PostgreSQL, the
real state machine on moto, the simulated cluster). Schemathesis reads docs/openapi.json and sends
what it derives from it: valid and invalid parameters and bodies, undeclared methods, and chains of
calls that follow the responses (deploy -> status, logs, abort, continue, rollback). Every check
runs except authentication (schemathesis.toml: the local stack has no SigV4), with a bounded,
deterministic number of examples per operation, so a run is repeatable and takes well under two
minutes. New routes and fields are covered as soon as `make openapi` documents them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local.conftest import ROOT, StackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOCUMENT = ROOT / "docs" / "openapi.json"
CONFIG = ROOT / "schemathesis.toml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def schemathesis_executable() -> Path:
    exe = Path(sys.executable).parent / "st"
    assert exe.is_file(), f"schemathesis is not installed next to {sys.executable}: run `make setup`"
    return exe


def run_schemathesis(stack: StackProcess, document: Path, report: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(schemathesis_executable()), "--config-file", str(CONFIG), "run", str(document), "--url", stack.url,
         "--report", "json", "--report-json-path", str(report), "--no-color", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_schemathesis_finds_nothing_against_the_local_stack(local_stack: StackProcess, tmp_path: Path) -> None:
    # Given the documented operations (whatever routes exist today)
    paths = json.loads(DOCUMENT.read_text())["paths"]
    operations = [f"{method.upper()} {path}" for path, item in paths.items() for method in item if method in METHODS]
    report = tmp_path / "schemathesis.json"
    # When schemathesis runs every check but authentication against the stack
    completed = run_schemathesis(local_stack, DOCUMENT, report)
    output = completed.stdout[-20_000:] + completed.stderr[-4_000:]
    # Then it tested every documented operation and found no failure
    assert completed.returncode == 0, output
    result = json.loads(report.read_text())
    assert result["complete"] and result["stop_reason"] == "completed", output
    assert result["operations"]["tested"] == len(operations) > 0, (result["operations"], operations)
    assert result["test_cases"]["with_failures"] == 0 and result["failures"] == [], output
    assert result["errors"] == [], output
    assert result["test_cases"]["generated"] >= 20 * len(operations), result["test_cases"]
    print(  # the figures, visible with -s and in the CI log on failure
        f"schemathesis: {len(operations)} operations, {result['test_cases']['generated']} cases, "
        f"0 failures, {result['running_time']:.0f} s"
    )


def test_the_run_fails_when_the_document_and_the_api_disagree(local_stack: StackProcess, tmp_path: Path) -> None:
    # Given a document that forgets that status answers 404 for an unknown upgrade
    doc = json.loads(DOCUMENT.read_text())
    del doc["paths"]["/api/upgrades/{upgradeId}/status"]["get"]["responses"]["404"]
    tampered = tmp_path / "openapi.json"
    tampered.write_text(json.dumps(doc))
    # When schemathesis runs on that operation alone
    report = tmp_path / "schemathesis.json"
    completed = run_schemathesis(
        local_stack, tampered, report, "--include-path", "/api/upgrades/{upgradeId}/status", "--max-examples", "5"
    )
    # Then it fails and names the undocumented status
    assert completed.returncode != 0, completed.stdout[-4000:]
    assert "Undocumented status code" in completed.stdout and "Received: 404" in completed.stdout
    assert json.loads(report.read_text())["test_cases"]["with_failures"] > 0
