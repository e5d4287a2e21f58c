"""The local stack the SAM invocations run against: `upgrade-local` on a fresh database of the machine's PostgreSQL.

The stack runs the simulated cluster on 127.0.0.1 and the database is the machine's PostgreSQL on 127.0.0.1:5432 (a
SAM container cannot reach the embedded server's unix socket). It holds one known state: the demo fleet (50 customers,
synced once at start-up; no schedule, no sweep) and no upgrade yet. The events name upgrade 123 and upgrade 1's rows,
which it does not hold: each answers the same, whichever runs first (an upgrade at its gate would be changed by the
workers' events, whose log ids are its rows, and the answers would depend on the order).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from upgradectl.local.functions import ROOT
from upgradectl.samlocal.invoke import StackEndpoints

ADMIN_URL = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


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


@contextmanager
def local_stack(timeout: float = 120) -> Iterator[StackEndpoints]:
    """Start the stack on a fresh database, yield where its parts are, stop it and drop the database."""
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
