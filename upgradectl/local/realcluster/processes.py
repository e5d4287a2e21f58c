"""Child processes started by the real cluster: each in its own session, logged to a file, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class StartError(RuntimeError):
    """One line naming the step that failed and the fix."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_free(port: int, what: str) -> None:
    """StartError naming `what` when 127.0.0.1:port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StartError(
                f"{what}: port 127.0.0.1:{port} is in use ({exc.strerror}); stop what holds it or pick another"
            ) from exc


class Process:
    """One started program: its argv, its log file, its PID."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        handle = log.open("ab")
        try:
            self.popen = subprocess.Popen(  # noqa: S603 - an argv list of our own binaries
                list(argv), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise StartError(f"{name}: cannot start {argv[0]}: {exc}") from exc
        finally:
            handle.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def stop(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM to this PID, then SIGKILL after the grace period; waits for it to be gone."""
        if self.popen.poll() is not None:
            return
        try:
            os.kill(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def wait_until(what: str, check: object, timeout: float, process: Process | None = None, fix: str = "") -> None:
    """Poll `check()` (a callable returning truthy) until it holds; StartError naming `what` else."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise StartError(f"{what}: {process.name} exited (code {process.popen.returncode}): {process.tail()}"
                             + (f"; {fix}" if fix else ""))  # fmt: skip
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: BLE001, S110 - not ready yet
            pass
        time.sleep(0.2)
    tail = f": {process.tail()}" if process is not None else ""
    raise StartError(f"{what}: not ready after {timeout:g} s{tail}" + (f"; {fix}" if fix else ""))
