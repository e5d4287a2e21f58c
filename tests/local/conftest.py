"""The local stack as a separate process (`python -m upgradectl.local`), as an operator runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.database import temporary_database

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nobody listens: a connect is refused and the port can be bound again (TIME_WAIT does not count)."""
    with socket.socket() as client:
        if client.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
        return True


def postgres_processes(data_dir: Path | None = None) -> list[psutil.Process]:
    """Live (non-zombie) postgres processes, optionally only those serving `data_dir`."""
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.info["name"] != "postgres":
            continue
        if data_dir is None or str(data_dir) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


class StackProcess:
    def __init__(self, args: list[str], env: dict[str, str], logs: Path, *, port: int | None = None,
                 ready_timeout: float = 60, registry: bool = False) -> None:  # fmt: skip
        """`registry`: the stack's image registry and pre-flight as `make run` has them; by default --no-registry
        (these tests deploy many versions the registry does not hold; tests/local/test_stack_images.py covers it)."""
        self.port = port or free_port()  # a port: the same stack again after a restart
        self.url = f"http://localhost:{self.port}"
        self.stdout_path = logs / f"stack-{self.port}.out"
        self.stderr_path = logs / f"stack-{self.port}.err"
        self._stdout = self.stdout_path.open("w")
        self._stderr = self.stderr_path.open("w")
        self.started_seconds = 0.0
        began = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "upgradectl.local",
                "--port",
                str(self.port),
                "--quiet",
                *([] if registry else ["--no-registry"]),
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._stdout,
            stderr=self._stderr,
        )
        self._wait_ready(timeout=ready_timeout)
        self.started_seconds = time.monotonic() - began

    @property
    def output(self) -> str:
        return self.stdout_path.read_text() + "\n--- stderr ---\n" + self.stderr_path.read_text()[-4000:]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the local stack exited with {self.process.returncode}:\n{self.output}")
            if "listening on" in self.stdout_path.read_text():
                try:
                    self.get("/api/upgrades")
                    return
                except (urllib.error.URLError, ConnectionError):
                    pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the local stack did not become ready in {timeout} s:\n{self.output}")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data or method not in ("GET", "HEAD") else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, path: str) -> Any:
        code, data = self.request("GET", path)
        assert code == 200, (code, data)
        return data

    def wait_status(self, upgrade_id: str, wanted: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.get(f"/api/upgrades/{upgrade_id}/status")
            if data["status"] in wanted:
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"status never became {wanted}; last {data}\n{self.output}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Send `sig` (Ctrl-C by default) and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise AssertionError(f"the local stack did not stop within {timeout} s:\n{self.output}") from None
        self._stdout.close()
        self._stderr.close()
        return int(self.process.returncode)


def stack_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "UPGRADE_API_URL")}
    env.update(POWERTOOLS_LOG_LEVEL="WARNING", **extra)
    return env


@pytest.fixture(scope="module")
def stack_database() -> Iterator[str]:
    with temporary_database(prefix="upgrades_local") as url:
        yield url


@pytest.fixture(scope="module")
def local_stack(stack_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """20 demo customers (cust_abc123..cust_abc142); cust_abc142's helm Jobs always fail."""
    logs = tmp_path_factory.mktemp("local-stack")
    stack = StackProcess(
        ["--customers", "20", "--job-seconds", "0.2", "--poll-seconds", "0", "--fail-customer", "cust_abc142"],
        stack_env(DATABASE_URL=stack_database),
        logs,
    )
    yield stack
    code = stack.stop(signal.SIGINT)
    assert code == 0, stack.output
    assert port_is_free(stack.port)
    assert "stopped cleanly" in stack.stdout_path.read_text()
    # and nothing it ran (not even a task still finishing as it stopped) tried to reach AWS
    assert "amazonaws.com" not in stack.stderr_path.read_text(), stack.output
