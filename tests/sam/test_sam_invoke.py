"""`make sam-invoke`: every function invoked with every file of events/ through `sam local invoke` (podman, the
stand-in Lambda image), against a local stack's PostgreSQL and simulated cluster, each answer checked.

Under CI a missing podman, mmdebstrap or sam fails these tests (tests/support/tools.py); .ci/run installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import require_tool
from upgradectl.local.functions import FUNCTIONS, ROOT
from upgradectl.samlocal.expectations import EXPECTED

SAM = ROOT / ".venv-sam" / "bin" / "sam"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "upgradectl.samlocal", *args],
        cwd=ROOT, env=env or dict(os.environ), capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip


def test_a_machine_without_a_container_engine_is_told_how_to_install_one(tmp_path: Path):
    """Breakage tried: find_engine returning docker because its client is installed (this machine has
    /usr/local/bin/docker without a daemon): SAM then failed later with "Error: Running AWS SAM projects
    locally requires a container runtime", naming no install command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    done = run_cli("invoke", "--no-build", env={**os.environ, "PATH": str(bin_dir)})
    assert done.returncode == 2, done.stderr
    assert "apt-get install -y podman runc" in done.stderr


def test_docker_without_podman_is_refused_before_anything_starts(tmp_path: Path):
    """Breakage tried: the check removed (the run went on with Docker and failed later without naming podman; on a
    bridge the functions cannot reach 127.0.0.1 anyway: see the relay-off breakage of the end-to-end test)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 0\n")  # `docker info` answers: a daemon runs
    (bin_dir / "docker").chmod(0o755)
    done = run_cli("invoke", "--no-build", env={**os.environ, "PATH": str(bin_dir)})
    assert done.returncode == 2, done.stderr
    assert "make sam-invoke needs podman (apt-get install -y podman runc)" in done.stderr


def test_an_event_file_that_does_not_match_its_function_fails_naming_the_field(tmp_path: Path):
    """Breakages tried: api_deploy's body without `component` (the check said nothing, SAM answered a 422 and the
    run went on), and `requestContext.requestTime` removed (what API Gateway always sends; events/ lacked it
    before this check existed)."""
    events = tmp_path / "events"
    shutil.copytree(ROOT / "events", events)
    deploy = json.loads((events / "api_deploy.json").read_text())
    deploy["body"] = json.dumps({"version": "v1.2.0", "strategy": "all"})
    (events / "api_deploy.json").write_text(json.dumps(deploy))
    status = json.loads((events / "api_upgrades_status.json").read_text())
    del status["requestContext"]["requestTime"]
    (events / "api_upgrades_status.json").write_text(json.dumps(status))
    done = run_cli("invoke", "--no-build", "--events", str(events))
    assert done.returncode == 1, done.stderr
    assert "events/api_deploy.json: body: 'component' is a required property" in done.stderr
    assert "events/api_upgrades_status.json: requestContext.requestTime: Field required" in done.stderr


def test_every_event_file_has_an_expected_answer():
    """Breakage tried: a new events/ file without its line in expectations.py (the run refused it by name)."""
    assert {p.stem for p in (ROOT / "events").glob("*.json")} == set(EXPECTED)


@pytest.mark.e2e
def test_every_function_answers_every_event_through_sam_local_invoke(tmp_path: Path):
    """sam build, the stand-in image (cached under ~/.cache/customer-upgrades/sam-local), the local stack on a
    fresh database (the demo fleet), then 40 `sam local invoke` runs, each answer judged.

    Breakages tried (each on a run of three events: fleet, queue stats, the scheduled sync): the relay's host network
    turned off (the fleet answered 503 and the sync raised DatabaseUnavailable: 127.0.0.1 was the container's own);
    KUBE_READER_TOKEN_FILE left out of the env-vars (the sync answered status failed: the reader identity had no
    token); DATABASE_URL removed from template.yaml's Globals (all three raised SettingsError: --env-vars cannot set
    an undeclared variable, so the functions had no database).
    """
    require_tool("podman")
    require_tool("mmdebstrap")
    sam = require_tool("sam", os.environ.get("SAM_EXECUTABLE"), str(SAM))
    report = tmp_path / "report.json"
    done = run_cli("invoke", "--report", str(report), env={**os.environ, "SAM_EXECUTABLE": sam})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    answers = {entry["event"]: entry for entry in json.loads(report.read_text())}
    assert set(answers) == {p.stem for p in (ROOT / "events").glob("*.json")}
    assert {entry["function"] for entry in answers.values()} == {
        f.name for f in FUNCTIONS.iterdir() if (f / "app.py").is_file()
    }
    assert [name for name, entry in answers.items() if entry["problem"]] == []

    # SAM's exit code says nothing: the answers do. A call that needs AWS answers its documented error, and the
    # error says the service could not be reached (the closed loopback endpoint), not anything else.
    def body(name: str) -> dict:
        return json.loads(answers[name]["answer"]["body"])

    for name in ("api_queue_stats", "api_queue_job", "api_deploy", "api_deploy_idempotent"):
        assert answers[name]["answer"]["statusCode"] == 503
        assert body(name)["error"] == "WorkflowUnavailable"
        assert "Step Functions unreachable" in body(name)["message"] and "127.0.0.1:9" in body(name)["message"]
    assert body("api_sync")["error"] == "SyncUnavailable" and "SyncCustomersFunction" in body("api_sync")["message"]
    assert answers["migrate"]["answer"]["errorType"] == "ResponseNotDelivered"
    # what only the database and the cluster can answer
    assert body("api_upgrades_plan")["total"] == 50
    assert body("api_customers_fleet")["customers"] == 50
    assert answers["sync_customers_schedule"]["answer"]["counts"]["customers"] == 50
