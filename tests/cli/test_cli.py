"""The operator CLI against a fake API: flags -> requests, messages, exit codes, SigV4."""

from __future__ import annotations

import io
import re
import socket
from typing import Any

import pytest

from upgradectl import cli, rendering
from upgradectl.client import UpgradeApi, region_from_url, should_sign


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


DEPLOYED = {
    "upgradeId": "123",
    "jobId": "upgrade-123-ab",
    "strategy": "canary",
    "total": 50,
    "waves": [5, 45],
    "message": "Canary upgrade started for 5 customers; 45 more after /continue",
    "status": "pending",
}


def status(state: str, completed: int = 0, failed: int = 0, in_progress: int = 0, **extra: Any) -> dict[str, Any]:
    return {"upgradeId": "123", "component": "api", "version": "v1.2.0", "fromVersion": "v1.1.0",
            "strategy": "canary", "total": 10, "completed": completed, "failed": failed, "inProgress": in_progress,
            "pending": 10 - completed - failed - in_progress, "skipped": 0, "rolledBack": 0, "status": state,
            "currentWave": 0, "totalWaves": 2, "haltReason": None, "startedAt": "2025-10-22T17:00:00.000Z",
            "completedAt": None, **extra}  # fmt: skip


def test_the_script_flags_start_an_upgrade(fake_api):
    # Given the API accepts a deploy
    fake_api.responder = lambda m, p, b: (202, DEPLOYED)
    # When the operator uses the PowerShell script's options as flags
    code, out, _ = run(
        "--api-url",
        fake_api.url,
        "--component",
        "api",
        "--version",
        "v1.2.0",
        "--strategy",
        "canary",
        "--canary-percent",
        "10",
    )
    # Then the spec's request is sent and the answer is shown with the next steps
    assert code == 0
    sent = fake_api.requests[0]
    assert (sent.method, sent.path) == ("POST", "/api/upgrades/deploy")
    assert sent.body == {"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 10}
    assert sent.headers["Content-Type"] == "application/json" and "Authorization" not in sent.headers
    assert "Canary upgrade started for 5 customers" in out and "upgrade id 123" in out
    assert "upgrade-customers continue 123" in out


def test_deploy_subcommand_with_batch_size(fake_api):
    fake_api.responder = lambda m, p, b: (202, {**DEPLOYED, "strategy": "batch"})
    code, _, _ = run(
        "--api-url",
        fake_api.url,
        "deploy",
        "--component",
        "exporter",
        "--version",
        "v1.1.0",
        "--strategy",
        "batch",
        "--batch-size",
        "10",
    )
    assert code == 0
    assert fake_api.requests[0].body == {
        "component": "exporter",
        "version": "v1.1.0",
        "strategy": "batch",
        "batchSize": 10,
    }


def test_train_flags_send_a_release_train(fake_api):
    fake_api.responder = lambda m, p, b: (202, DEPLOYED)
    code, _, err = run("--api-url", fake_api.url, "deploy", "--train", "api=v2.0.0", "--train", "dashboard=v2.0.0",
                       "--strategy", "all")  # fmt: skip
    assert code == 0, err
    assert fake_api.requests[0].body == {"components": {"api": "v2.0.0", "dashboard": "v2.0.0"}, "strategy": "all"}


def test_the_status_of_a_train_names_each_component(fake_api):
    fake_api.responder = lambda m, p, b: (
        200,
        status("completed", 5, components={"api": "v2.0.0", "dashboard": "v2.1.0"}),
    )
    code, out, _ = run("--api-url", fake_api.url, "status", "123")
    assert code == 0
    assert "upgrade 123: release train api → v2.0.0, dashboard → v2.1.0 (" in out


def test_the_status_names_a_moved_image_tag_and_what_the_waves_install(fake_api):
    pinned, moved = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    tags = [
        {"repository": "r.example/api", "tag": "v2.0.0", "pinnedDigest": pinned, "currentDigest": moved,
         "pinnedDigestPresent": True, "wave": 1, "customers": 3, "detectedAt": "2026-12-06T10:00:00.000Z"},
        {"repository": "r.example/api", "tag": "v2.0.0", "pinnedDigest": pinned, "currentDigest": None,
         "pinnedDigestPresent": False, "wave": 2, "customers": 3, "detectedAt": "2026-12-06T11:00:00.000Z"},
    ]  # fmt: skip
    fake_api.responder = lambda m, p, b: (200, status("halted", 5, movedTags=tags))
    _, out, _ = run("--api-url", fake_api.url, "status", "123")  # exit code 3: halted
    assert ("image tag moved before wave 2: r.example/api:v2.0.0 now names sha256:bbbbbbbbbbbb; the waves install "
            "the pinned sha256:aaaaaaaaaaaa") in out  # fmt: skip
    assert (
        "image tag moved before wave 3: r.example/api:v2.0.0 is gone; the pinned sha256:aaaaaaaaaaaa is gone too: halted"
        in out
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [(("--train", "api"), "COMPONENT=VERSION"), (("--train", "api=v2", "--train", "api=v3"), "names api twice"),
     (("--train", "api=v2", "--component", "api", "--version", "v2"), "not both")],
)  # fmt: skip
def test_bad_train_flags_are_a_usage_error(fake_api, argv, said):
    code, _, err = run("--api-url", fake_api.url, "deploy", *argv, "--strategy", "all")
    assert code == cli.EXIT_USAGE and said in err
    assert fake_api.requests == []


def test_missing_deploy_flags_are_a_usage_error(fake_api):
    code, _, err = run("--api-url", fake_api.url, "--component", "api")
    assert code == cli.EXIT_USAGE and "--version, --strategy" in err
    assert fake_api.requests == []


def test_invalid_choice_is_a_usage_error():
    code, _, _ = run("--component", "database", "--version", "v1", "--strategy", "all")
    assert code == cli.EXIT_USAGE


def test_a_4xx_prints_the_server_message_and_exits_1(fake_api):
    message = "invalid request: version: must be an image tag"
    fake_api.responder = lambda m, p, b: (422, {"message": message, "errors": []})
    code, _, err = run("--api-url", fake_api.url, "--component", "api", "--version", "bad tag", "--strategy", "all")
    assert code == cli.EXIT_ERROR
    assert f"upgrade-customers: error: {message} (HTTP 422)" in err


def test_unreachable_api_exits_1_with_a_clear_message():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run("--api-url", f"http://127.0.0.1:{port}", "list")
    assert code == cli.EXIT_ERROR
    assert f"cannot reach the upgrade API at http://127.0.0.1:{port}" in err


def test_non_json_answer_is_an_error(fake_api):
    fake_api.responder = lambda m, p, b: (200, "<html>proxy</html>")
    code, _, err = run("--api-url", fake_api.url, "status", "1")
    assert code == cli.EXIT_ERROR and "not JSON" in err


def test_watch_draws_progress_until_the_canary_gate(fake_api):
    # Given an upgrade that progresses and then waits for continue
    answers = iter([status("in_progress", 0, 0, 1), status("in_progress", 1, 0, 0),
                    status("awaiting_continue", 1, 0, 0, currentWave=1)])  # fmt: skip
    fake_api.responder = lambda m, p, b: (200, next(answers))
    out, err = io.StringIO(), io.StringIO()
    api = UpgradeApi(fake_api.url)
    # When the operator watches
    code = cli.Cli(api, out=out, err=err, as_json=False, sleep=lambda s: None).watch(
        "123", interval=0, through_gate=False
    )
    # Then each change is a progress line with completed / failed / in progress, and the hint to continue
    lines = out.getvalue().splitlines()
    assert code == 0
    assert re.search(r"\]\s+0/10\s+completed 0  failed 0  in progress 1", lines[0])
    assert "completed 1  failed 0  in progress 0" in lines[1]
    assert "awaiting_continue" in lines[2] and "upgrade-customers continue 123" in lines[3]
    assert all(r.path == "/api/upgrades/123/status" for r in fake_api.requests)


def test_watch_exits_3_when_the_upgrade_halts(fake_api):
    fake_api.responder = lambda m, p, b: (200, status("halted", 0, 1, haltReason="wave 1 of 2: 1 of 1 failed"))
    code, out, _ = run("--api-url", fake_api.url, "watch", "123")
    assert code == cli.EXIT_FAILURES
    assert "ended halted (wave 1 of 2: 1 of 1 failed)" in out and "logs 123 --status failed" in out


def test_progress_line_bar():
    line = rendering.progress_line(status("in_progress", 5, 1, 2), unicode=False, width=10)
    assert line.startswith("[#####x----]    6/10") and "in progress 2" in line and "wave 1/2" in line


def test_logs_are_a_table_and_filters_become_query_parameters(fake_api):
    entry = {"id": 7, "customer_id": "cust_abc123", "component": "api", "from_version": "v1.1.0",
             "to_version": "v1.2.0", "status": "failed", "started_at": "2025-10-22T17:00:00.000Z",
             "completed_at": "2025-10-22T17:01:30.000Z", "output": "Error: UPGRADE FAILED: boom\n",
             "error": "helm exited 1", "operation": "upgrade", "wave": 0}  # fmt: skip
    fake_api.responder = lambda m, p, b: (
        200,
        {"upgradeId": "123", "count": 1, "total": 1, "nextOffset": None, "logs": [entry]},
    )
    code, out, _ = run("--api-url", fake_api.url, "logs", "123", "--status", "failed", "--full")
    assert code == 0
    assert fake_api.requests[0].path == "/api/upgrades/123/logs?status=failed"
    assert "cust_abc123" in out and "v1.1.0 → v1.2.0" in out and "90.0" in out and "helm exited 1" in out
    assert "| Error: UPGRADE FAILED: boom" in out


def test_logs_follow_every_page(fake_api):
    def pages(method: str, path: str, body: Any) -> tuple[int, Any]:
        second = "offset=1" in path
        row = {"id": 2 if second else 1, "customer_id": "c", "component": "api", "from_version": None,
               "to_version": "v", "status": "completed", "started_at": None, "completed_at": None,
               "output": None, "error": None}  # fmt: skip
        return 200, {"upgradeId": "5", "count": 1, "total": 2, "nextOffset": None if second else 1, "logs": [row]}

    fake_api.responder = pages
    code, out, _ = run("--api-url", fake_api.url, "--json", "logs", "5")
    assert code == 0 and '"count": 2' in out and len(fake_api.requests) == 2


def test_continue_and_rollback_call_the_spec_paths(fake_api):
    fake_api.responder = lambda m, p, b: (
        (200, {"message": "Upgrade continuation queued", "upgradeId": "123", "jobId": "j"}) if p.endswith("continue")
        else (202, {"message": "Rollback started", "customerId": "cust_abc123", "namespace": "customer-abc123",
                    "upgradeId": "123", "rollbackId": 9, "jobId": "rollback-123-9", "toVersion": "v1.1.0",
                    "status": "pending"})
    )  # fmt: skip
    assert run("--api-url", fake_api.url, "continue", "123")[0] == 0
    code, out, _ = run("--api-url", fake_api.url, "rollback", "123", "cust_abc123")
    assert code == 0 and "customer-abc123" in out and "v1.1.0" in out
    assert [(r.method, r.path) for r in fake_api.requests] == [
        ("POST", "/api/upgrades/123/continue"),
        ("POST", "/api/upgrades/123/rollback/cust_abc123"),
    ]
    # bodiless writes say they are JSON too: the local stack refuses writes without it (upgradectl/loopback.py).
    # Breakage tried: Content-Type only with a body (main): both requests lacked it and this failed.
    assert [(r.body, r.headers.get("Content-Type")) for r in fake_api.requests] == [(None, "application/json")] * 2


@pytest.fixture
def aws_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_sigv4_signs_for_execute_api(fake_api, aws_credentials):
    # Given credentials from the standard chain (here: the environment)
    fake_api.responder = lambda m, p, b: (202, DEPLOYED)
    # When the CLI is told to sign
    code, _, err = run(
        "--api-url",
        fake_api.url,
        "--sign",
        "--region",
        "eu-west-1",
        "--component",
        "api",
        "--version",
        "v1.2.0",
        "--strategy",
        "all",
    )
    # Then the request carries a SigV4 signature for execute-api in that region, over host, date and body
    assert code == 0, err
    headers = fake_api.requests[0].headers
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in auth
    found = re.search(r"SignedHeaders=([^,]+)", auth)
    assert found is not None, auth
    signed = found.group(1).split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed)
    assert headers["X-Amz-Security-Token"] == "session-token" and headers["X-Amz-Date"]


def test_sigv4_without_credentials_is_a_clear_error(fake_api, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run("--api-url", fake_api.url, "--sign", "--region", "eu-west-1", "list")
    assert code == cli.EXIT_ERROR and "no AWS credentials found" in err
    assert fake_api.requests == []


def test_aws_urls_are_signed_by_default_and_local_ones_not():
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"
    assert should_sign(url) and region_from_url(url) == "eu-west-1"
    assert not should_sign("http://localhost:3100") and region_from_url("http://localhost:3100") is None
    assert UpgradeApi(url).sign is True and UpgradeApi("http://localhost:3100").sign is False
    assert UpgradeApi(url, sign=False).sign is False


def test_safety_flags_become_the_request_fields(fake_api):
    fake_api.responder = lambda m, p, b: (202, {**DEPLOYED, "strategy": "batch"})
    code, _, _ = run(
        "--api-url", fake_api.url, "--component", "api", "--version", "v1.3.0", "--strategy", "batch",
        "--failure-threshold", "10%", "--auto-rollback", "--bake-seconds", "60",
        "--health-path", "/healthz", "--health-timeout", "120",
    )  # fmt: skip
    assert code == 0
    assert fake_api.requests[0].body == {
        "component": "api", "version": "v1.3.0", "strategy": "batch",
        "failureThreshold": {"percent": 10.0}, "autoRollback": True, "bakeSeconds": 60,
        "healthCheck": {"httpPath": "/healthz", "timeoutSeconds": 120},
    }  # fmt: skip
    code, _, _ = run("--api-url", fake_api.url, "--component", "api", "--version", "v1", "--strategy", "all",
                     "--failure-threshold", "2", "--no-health-check")  # fmt: skip
    assert fake_api.requests[1].body["failureThreshold"] == {"count": 2}
    assert fake_api.requests[1].body["healthCheck"] == {"enabled": False}


def test_a_bad_failure_threshold_is_a_usage_error_and_sends_nothing(fake_api):
    code, _, err = run("--api-url", fake_api.url, "--component", "api", "--version", "v1", "--strategy", "all",
                       "--failure-threshold", "ten")  # fmt: skip
    assert code == cli.EXIT_USAGE and "--failure-threshold" in err
    assert fake_api.requests == []


def test_abort_and_rollback_all_call_their_paths(fake_api):
    fake_api.responder = lambda m, p, b: (
        (202, {"message": "Abort requested", "upgradeId": "123", "status": "in_progress",
               "haltReason": "aborted by x", "rollback": True}) if p.endswith("abort")
        else (202, {"message": "Rollback of 3 customers started, last wave first", "upgradeId": "123",
                    "jobId": "rollback-123-all-1", "customers": 3, "waves": [1, 2]})
    )  # fmt: skip
    code, out, _ = run("--api-url", fake_api.url, "abort", "123", "--rollback", "--reason", "error rate up")
    assert code == 0 and "Abort requested" in out
    code, out, _ = run("--api-url", fake_api.url, "rollback", "123", "--all", "--max-concurrency", "3")
    assert code == 0 and "rollback-123-all-1" in out
    assert [(r.method, r.path, r.body) for r in fake_api.requests] == [
        ("POST", "/api/upgrades/123/abort", {"rollback": True, "reason": "error rate up"}),
        ("POST", "/api/upgrades/123/rollback", {"maxConcurrency": 3}),
    ]


def test_rollback_needs_a_customer_or_all_but_not_both(fake_api):
    assert run("--api-url", fake_api.url, "rollback", "123")[0] == cli.EXIT_USAGE
    assert run("--api-url", fake_api.url, "rollback", "123", "cust_abc123", "--all")[0] == cli.EXIT_USAGE
    assert fake_api.requests == []
