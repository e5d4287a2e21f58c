"""The local stack the SAM invocations run against: `upgrade-local` on a fresh database of the machine's PostgreSQL.

The stack runs the simulated cluster on 127.0.0.1 and the database is the machine's PostgreSQL on 127.0.0.1:5432 (a
SAM container cannot reach the embedded server's unix socket). Before the invocations it holds one known state: the
demo fleet (50 customers, synced once at start-up) and upgrade 123 (the first id of a fresh stack, the one the API
events name), a canary of api v1.2.0 waiting at its gate.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from upgradectl.local.functions import ROOT
from upgradectl.samlocal.invoke import StackEndpoints

ADMIN_URL = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CANARY = {"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 10}


@contextmanager
def fresh_database(admin_url: str = ADMIN_URL) -> Iterator[str]:
    name = f"sam_invoke_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local stack
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@contextmanager
def local_stack(timeout: float = 120) -> Iterator[StackEndpoints]:
    """Start the stack on a fresh database, bring upgrade 123 to its canary gate, yield where its parts are."""
    with fresh_database() as database_url, tempfile.TemporaryDirectory(prefix="sam-stack-") as tmp:
        port = _free_port()
        out = Path(tmp) / "stack.out"
        with out.open("w") as stdout, (Path(tmp) / "stack.err").open("w") as stderr:
            process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [sys.executable, "-m", "upgradectl.local", "--port", str(port), "--quiet", "--database-url",
                 database_url, "--sync-seconds", "0", "--sweep-seconds", "0"],
                cwd=ROOT, stdout=stdout, stderr=stderr,
            )  # fmt: skip
        try:
            banner = _wait_banner(process, out, Path(tmp) / "stack.err", timeout)
            base = f"http://127.0.0.1:{port}"
            _prepare(base, timeout)
            yield StackEndpoints.from_banner(banner, database_url)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_banner(process: subprocess.Popen[bytes], out: Path, err: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text()
        if "Stop: Ctrl-C" in text:
            return text
        if process.poll() is not None:
            raise RuntimeError(f"the local stack exited with {process.returncode}: {err.read_text()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"the local stack did not start in {timeout:g} s: {err.read_text()[-3000:]}")


def _prepare(base: str, timeout: float) -> None:
    code, started = _call(base, "POST", "/api/upgrades/deploy", CANARY)
    if code != 202 or str(started.get("upgradeId")) != "123":
        raise RuntimeError(f"the canary deploy answered {code}: {started}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, status = _call(base, "GET", "/api/upgrades/123/status")
        if status.get("status") == "awaiting_continue":
            return
        time.sleep(0.5)
    raise RuntimeError(f"upgrade 123 did not reach its canary gate in {timeout:g} s: {status}")
