"""The README's `make run`, run as written from the checkout: the stack it promises answers where the README says.

The port comes from UPGRADE_LOCAL_PORT (a free one instead of 3100) and the database from DATABASE_URL (a fresh
one instead of the embedded server, which tests/local/test_stack.py starts and stops); nothing else differs from
what a reader types. The registry of the README's commands is tests/docs/test_readme_commands.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.local.conftest import ROOT, free_port, port_is_free, stack_env

pytestmark = pytest.mark.e2e

MAKE_RUN = "make run"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_make_run_serves_the_api_the_console_the_reference_and_the_metrics(stack_database: str, tmp_path: Path):
    """Breakage tried: the Makefile's `run` recipe pointed at a console script that does not exist
    (`upgrade-locale`): make exited 127 and this test failed before any page was asked for."""
    port = free_port()
    env = stack_env(DATABASE_URL=stack_database, UPGRADE_LOCAL_PORT=str(port))
    log_path = tmp_path / "make-run.log"
    with log_path.open("w") as log:
        running = subprocess.Popen(shlex.split(MAKE_RUN), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert running.poll() is None, log_path.read_text()
                try:
                    if _get(f"{base}/api/upgrades")[0] == 200:
                        break
                except (urllib.error.URLError, ConnectionError):
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
            # the README's first rollout speaks of "the 50 demo customers"
            code, fleet = _get(f"{base}/api/fleet")
            assert code == 200 and json.loads(fleet)["customers"] == 50, fleet
            # and its table of what runs on localhost
            for path, marker in (("/admin/queues", b"<html"), ("/docs", b"swagger"), ("/metrics", b"# help")):
                code, body = _get(base + path)
                assert code == 200 and marker in body.lower(), (path, code, body[:300])
        finally:
            with contextlib.suppress(ProcessLookupError):  # (make may have ended already: then the test failed)
                os.killpg(running.pid, signal.SIGINT)  # Ctrl-C in the terminal: make and the stack get it
            running.wait(timeout=60)
    assert "stopped cleanly" in log_path.read_text(), log_path.read_text()
    assert port_is_free(port)
