"""The local stack end to end, as a separate process: the curl walkthrough, the CLI, a clean stop.

The curl commands are read from docs/tutorials/local-stack.md ("Try the specification's examples"; the README's
first rollout is the same, tests/docs/test_readme.py): the specification's, with `-H "Content-Type: application/json"` on every write (the local stack refuses
writes without it: upgradectl/loopback.py); only `localhost:3100` becomes the test's port and the
example upgrade id `123` the id the deploy returned (on a fresh stack that is 123). The
specification's bare `curl -X POST …/continue` gets a 415 that says what to add. They run through the
real `curl` and `jq` (`.ci/run` installs them; under CI a missing one fails).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local.conftest import ROOT, StackProcess, port_is_free, postgres_processes, stack_env
from tests.support.tools import require_tool
from tests.support.walkthrough import bash_commands
from upgradectl import cli

pytestmark = pytest.mark.e2e


TUTORIAL = ROOT / "docs" / "tutorials" / "local-stack.md"
WALKTHROUGH_HEADING = "## Try the specification's examples"


WALKTHROUGH = bash_commands(TUTORIAL.read_text(), WALKTHROUGH_HEADING)
SPEC_DEPLOY, SPEC_STATUS, SPEC_LOGS, SPEC_CONTINUE, SPEC_ROLLBACK, SPEC_FAILED = WALKTHROUGH
SPEC_BARE_CONTINUE = "curl -X POST http://localhost:3100/api/upgrades/123/continue"  # the specification's
# The README's CLI lines, run as written from the checkout (tests/docs/test_readme_commands.py holds the registry)
CLI = ".venv/bin/upgrade-customers"
WATCH = ".venv/bin/upgrade-customers watch 123"


def run_spec(command: str, stack: StackProcess, upgrade_id: str = "123") -> str:
    """Run one of the spec's commands (bash, the real curl and jq) against the stack; return what it prints."""
    require_tool("curl")
    require_tool("jq")
    command = command.replace("localhost:3100", f"localhost:{stack.port}").replace("/123/", f"/{upgrade_id}/")
    completed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True)
    return completed.stdout


def test_the_fleet_is_what_the_simulated_clusters_releases_hold(local_stack: StackProcess):
    """The demo customers entered the inventory by discovery: read the simulated cluster's releases over
    HTTP (Helm's own encoding), as an outside check would, and compare with GET /api/fleet."""
    import kubernetes
    from upgrader.cluster.discovery import KubernetesFleetReader
    from upgrader.cluster.types import ClusterConfig

    banner = local_stack.stdout_path.read_text()
    found = re.search(r"kmock API server at (http://127\.0\.0\.1:\d+)", banner)
    assert found and "discovered at start-up" in banner and "20 new" in banner, banner
    url = found.group(1)
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url)) as api_client:
        reader = KubernetesFleetReader(api_client, ClusterConfig(mode="url", api_url=url))
        releases = [
            reader.release_in(ns.name, ns.name) for ns in reader.namespaces() if ns.name.startswith("customer-")
        ]
    spread: dict[str, dict[str, int]] = {}
    for release in releases:
        assert release is not None
        for component, version in release.versions.items():
            spread.setdefault(component, {}).setdefault(str(version), 0)
            spread[component][str(version)] += 1
    fleet = local_stack.get("/api/fleet")
    assert fleet["customers"] == len(releases) == 20
    assert {
        c["component"]: {v["version"]: v["customers"] for v in c["versions"]} for c in fleet["components"]
    } == spread
    assert local_stack.get("/api/customers?limit=1")["customers"][0]["customerId"] == "cust_abc123"


def test_the_walkthrough_is_the_specs_examples_with_the_json_header_on_writes():
    assert SPEC_DEPLOY.startswith("curl -X POST http://localhost:3100/api/upgrades/deploy")
    assert SPEC_STATUS == "curl http://localhost:3100/api/upgrades/123/status"
    assert SPEC_LOGS == "curl http://localhost:3100/api/upgrades/123/logs"
    assert SPEC_CONTINUE == SPEC_BARE_CONTINUE
    assert SPEC_ROLLBACK == "curl -X POST http://localhost:3100/api/upgrades/123/rollback/cust_abc123"
    assert (
        SPEC_FAILED == """curl http://localhost:3100/api/upgrades/123/logs | jq '.logs[] | select(.status=="failed")'"""
    )


def test_a_browsers_bodiless_post_is_refused_saying_what_to_add(local_stack: StackProcess):
    """The specification's bare `curl -X POST …/continue` works (the walkthrough below runs it); the same
    request with a header only a browser sends (a web page's no-cors POST) changes nothing, and the answer
    names the header. Breakage tried: the Content-Type rule off in the local server: the continue was
    answered (404 for an unknown upgrade) and this test failed."""
    command = SPEC_BARE_CONTINUE.replace("curl ", "curl -s -w '\\n%{http_code}' -H 'Sec-Fetch-Mode: no-cors' ")
    answer, code = run_spec(command.replace("/123/", "/999999/"), local_stack).rsplit("\n", 1)
    assert code == "415"
    message = json.loads(answer)["message"]
    assert message.startswith(
        "POST without a Content-Type is refused: send the header 'Content-Type: application/json'"
    )
    assert "(curl: -H 'Content-Type: application/json')" in message


def test_every_curl_example_of_the_readme_works_as_written(local_stack: StackProcess):
    # Deploy canary: the spec's response fields
    started = json.loads(run_spec(SPEC_DEPLOY, local_stack))
    assert {"upgradeId", "jobId", "strategy", "message"} <= set(started)
    assert started["strategy"] == "canary" and started["message"].startswith("Canary upgrade started for 2 customers")
    uid = started["upgradeId"]
    # Status: the spec's fields; the canary wave runs, then waits
    status = json.loads(run_spec(SPEC_STATUS, local_stack, uid))
    assert {
        "upgradeId",
        "component",
        "version",
        "strategy",
        "total",
        "completed",
        "failed",
        "inProgress",
        "status",
        "startedAt",
        "completedAt",
    } <= set(status)
    assert (status["upgradeId"], status["component"], status["version"], status["total"]) == (uid, "api", "v1.2.0", 20)
    waiting = local_stack.wait_status(uid, {"awaiting_continue", "halted"})
    assert waiting["status"] == "awaiting_continue" and waiting["completed"] == 2
    # Continue: the spec's response
    continued = json.loads(run_spec(SPEC_CONTINUE, local_stack, uid))
    assert continued["message"] == "Upgrade continuation queued" and continued["upgradeId"] == uid
    assert continued["jobId"] == started["jobId"]
    final = local_stack.wait_status(uid, {"completed", "completed_with_failures", "halted", "failed"})
    # cust_abc142's Jobs fail: the default budget tolerates no failure, inside the wave too, so the
    # upgrade halts; customers not yet started are skipped, the ones running finish
    assert (final["status"], final["failed"], final["completed"] + final["skipped"]) == ("halted", 1, 19)
    assert final["haltReason"] == "wave 2 of 2: 1 of 18 customers failed (tolerated: 0)"
    assert final["completedAt"] is not None
    # Logs: per-customer attempts with the spec's fields and helm's output
    logs = json.loads(run_spec(SPEC_LOGS, local_stack, uid))
    assert logs["upgradeId"] == uid and logs["count"] == 20
    entry = next(e for e in logs["logs"] if e["customer_id"] == "cust_abc123")
    assert {
        "id",
        "customer_id",
        "component",
        "from_version",
        "to_version",
        "status",
        "started_at",
        "completed_at",
        "output",
        "error",
    } <= set(entry)
    assert (entry["from_version"], entry["to_version"], entry["status"]) == ("v1.1.0", "v1.2.0", "completed")
    assert "has been upgraded" in entry["output"]
    # The jq filter on failed logs: exactly the customer whose Jobs fail, with helm's error
    failed_text = run_spec(SPEC_FAILED, local_stack, uid)
    failed = [json.loads(chunk) for chunk in _json_stream(failed_text)]
    assert [e["customer_id"] for e in failed] == ["cust_abc142"]
    assert failed[0]["error"] and "UPGRADE FAILED" in failed[0]["output"]
    # Rollback of the spec's customer: the spec's fields, and the helm rollback runs
    rolled = json.loads(run_spec(SPEC_ROLLBACK, local_stack, uid))
    assert {"message", "customerId", "namespace"} <= set(rolled)
    assert (rolled["customerId"], rolled["namespace"]) == ("cust_abc123", "customer-abc123")
    assert _wait_rollback(local_stack, uid, rolled["rollbackId"]) == "completed"


def _json_stream(text: str) -> list[str]:
    """Split jq's output (pretty-printed values one after another) into JSON documents."""
    decoder, chunks, index = json.JSONDecoder(), [], 0
    text = text.strip()
    while index < len(text):
        value, end = decoder.raw_decode(text, index)
        chunks.append(json.dumps(value))
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
    return chunks


def _wait_rollback(stack: StackProcess, uid: str, rollback_id: int) -> str:
    import time

    deadline = time.monotonic() + 30
    while True:
        page = stack.get(f"/api/upgrades/{uid}/logs?operation=rollback")
        row = next(e for e in page["logs"] if e["id"] == rollback_id)
        if row["status"] not in ("pending", "in_progress") or time.monotonic() > deadline:
            return str(row["status"])
        time.sleep(0.1)


def run_cli(stack: StackProcess, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--api-url", stack.url, *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_canary_upgrade_through_the_cli(local_stack: StackProcess):
    healthy = [f"cust_abc{n}" for n in range(123, 142)]  # everyone but cust_abc142, whose Jobs fail
    targets = [arg for cid in healthy for arg in ("--customer", cid)]
    # When the operator starts a canary with the script's flags and waits
    code, out, err = run_cli(
        local_stack,
        "--component",
        "dashboard",
        "--version",
        "v2.0.0",
        "--strategy",
        "canary",
        "--canary-percent",
        "10",
        *targets,
        "--wait",
    )
    # Then the canary wave ran and the CLI stopped at the gate with a hint
    assert code == cli.EXIT_OK, err
    assert "Canary upgrade started for 2 customers" in out
    assert "completed 2" in out and "upgrade-customers continue" in out
    uid = out.split("upgrade id ")[1].split()[0]
    # and the status over HTTP says it waits
    status = local_stack.get(f"/api/upgrades/{uid}/status")
    assert (status["status"], status["completed"], status["pending"]) == ("awaiting_continue", 2, 17)
    # When the operator continues and watches
    code, out, err = run_cli(local_stack, "continue", uid, "--wait")
    # Then every targeted customer is upgraded
    assert code == cli.EXIT_OK, err
    assert "Upgrade continuation queued" in out and f"Upgrade {uid} completed: 19 of 19" in out
    # the progress lines only move forward and the last one shows everyone done
    progress = [tuple(map(int, found)) for found in re.findall(r"\]\s+(\d+)/(\d+)\s+completed (\d+)", out)]
    assert progress, out
    assert progress == sorted(progress) and progress[-1] == (19, 19, 19), progress
    assert re.search(r"19/19\s+completed 19  failed 0  in progress 0  pending 0  completed", out), out
    status = local_stack.get(f"/api/upgrades/{uid}/status")
    assert (status["status"], status["completed"], status["failed"], status["inProgress"]) == ("completed", 19, 0, 0)
    # and status, logs and list show it
    code, out, _ = run_cli(local_stack, "status", uid)
    assert code == 0 and "status completed" in out and "v1.9.0 → v2.0.0" in out
    code, out, _ = run_cli(local_stack, "logs", uid, "--customer", "cust_abc125")
    assert code == 0 and "cust_abc125" in out and "has been upgraded" in out and "1 of 1 entries" in out
    code, out, _ = run_cli(local_stack, "--json", "logs", uid)
    assert code == 0 and json.loads(out)["count"] == 19
    code, out, _ = run_cli(local_stack, "list")
    assert code == 0 and f"{uid}  dashboard" in out
    # When one customer is rolled back
    code, out, err = run_cli(local_stack, "rollback", uid, "cust_abc130", "--wait")
    assert code == cli.EXIT_OK, err
    assert "customer-abc130" in out and "rollback completed" in out
    # And a second continue is refused with the server's message and a non-zero exit
    code, out, err = run_cli(local_stack, "continue", uid)
    assert code == cli.EXIT_ERROR and "not awaiting continue" in err and "HTTP 409" in err


def test_the_installed_command_reports_api_errors(local_stack: StackProcess):
    """The README's `.venv/bin/upgrade-customers` (tests/docs/test_readme_commands.py), as installed by setup."""
    completed = subprocess.run(
        [CLI, "--api-url", local_stack.url, "status", "999999"], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert completed.returncode == cli.EXIT_ERROR
    assert "upgrade 999999 not found (HTTP 404)" in completed.stderr


def test_the_readmes_watch_follows_an_upgrade_to_its_end(local_stack: StackProcess):
    """The README's `.venv/bin/upgrade-customers watch 123`, run as written (bash, from the checkout), with the
    stack's address in UPGRADE_API_URL and the id the deploy returned. Breakage tried: `watch` → `follow` in WATCH:
    tests/docs/test_readme_commands.py failed (another text than the README's) and so did this test."""
    # Given an upgrade of every customer, cust_abc142's Job failing
    code, started = local_stack.request("POST", "/api/upgrades/deploy",
                                        {"component": "exporter", "version": "v3.0.1", "strategy": "all"})  # fmt: skip
    assert code == 202, started
    uid = started["upgradeId"]
    # When the operator watches it as the README shows
    env = {k: v for k, v in os.environ.items() if k != "UPGRADE_API_URL"} | {"UPGRADE_API_URL": local_stack.url}
    completed = subprocess.run(["bash", "-c", WATCH.replace(" 123", f" {uid}")], capture_output=True, text=True,
                               timeout=120, cwd=ROOT, env=env)  # fmt: skip
    # Then it printed progress until the end and says how it ended, with the failed customer's way to its logs
    assert completed.returncode == cli.EXIT_FAILURES, completed.stderr
    assert f"Upgrade {uid} ended halted" in completed.stdout, completed.stdout
    assert f"upgrade-customers logs {uid} --status failed" in completed.stdout
    assert local_stack.get(f"/api/upgrades/{uid}/status")["status"] == "halted"


def test_stop_with_embedded_postgres_and_a_waiting_canary_leaves_nothing_running(tmp_path):
    # Given a stack on the embedded PostgreSQL (no DATABASE_URL) with a canary waiting at the gate
    data_dir = tmp_path / "pgdata"
    stack = StackProcess(
        ["--customers", "5", "--job-seconds", "0.1", "--poll-seconds", "0", "--data-dir", str(data_dir)],
        stack_env(),
        tmp_path,
    )
    try:
        assert "embedded PostgreSQL" in stack.stdout_path.read_text()
        assert "SIMULATED" in stack.stdout_path.read_text()
        # `make run`'s start is quiet: the banner, no library warnings (issue 25, item 4; breakage tried: the moto
        # logger's level back to WARNING, which shows its ToleratedFailurePercentage notice)
        started_log = stack.stderr_path.read_text()
        assert [line for line in started_log.splitlines() if "WARNING" in line or "Warning" in line] == [], started_log
        code, started = stack.request("POST", "/api/upgrades/deploy",
                                      {"component": "api", "version": "v9.0.0", "strategy": "canary",
                                       "canaryPercent": 20})  # fmt: skip
        assert code == 202, started
        assert started["upgradeId"] == "123"  # a fresh stack: the spec's example id
        stack.wait_status(started["upgradeId"], {"awaiting_continue"})
        assert postgres_processes(data_dir)
    finally:
        # When it gets SIGTERM
        code = stack.stop(signal.SIGTERM)
    # Then it exits 0, the port is free and no postgres of its data folder is left
    assert code == 0, stack.output
    assert port_is_free(stack.port)
    assert postgres_processes(data_dir) == []
    assert "stopped cleanly" in stack.stdout_path.read_text()
    # and the data survives for the next start
    assert (data_dir / "PG_VERSION").is_file()


def test_a_taken_port_is_reported_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = subprocess.run(
            [sys.executable, "-m", "upgradectl.local", "--port", str(port), "--data-dir", str(tmp_path / "pg")],
            capture_output=True, text=True, timeout=60, env=stack_env(), cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
    assert completed.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in completed.stderr
    assert not (tmp_path / "pg").exists()  # PostgreSQL was never started
