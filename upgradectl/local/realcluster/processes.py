"""Child processes started by the real cluster: each in its own session, logged to a file, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
# What etcd, kube-apiserver, docker-registry and prometheus (all Go: the syscall's strerror) print when a port
# chosen free was bound by something else before they bound it.
PORT_TAKEN = "address already in use"
PORT_ATTEMPTS = 3


class StartError(RuntimeError):
    """One line naming the step that failed and the fix."""


class PortTaken(StartError):
    """The process exited because its port, free when chosen, was taken before it bound it."""


def on_free_ports(start: Callable[[], T], attempts: int = PORT_ATTEMPTS) -> T:
    """`start()` again, up to `attempts` times, while it fails with PortTaken.

    `free_port()` only says a port is free now: between choosing it and the server binding it, another
    process (or an outgoing connection's ephemeral port) can take it. `start` must choose its ports anew on
    each call; any other failure is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except PortTaken:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


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
        self._log_start = handle.tell()  # the log is appended to: what this process wrote starts here
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
        return " | ".join(line.strip() for line in self.output().strip().splitlines()[-lines:])

    def output(self) -> str:
        """What this process wrote to its log (not what an earlier process with the same log wrote)."""
        try:
            with self.log.open("rb") as handle:
                handle.seek(self._log_start)
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def port_taken(self) -> bool:
        return PORT_TAKEN in self.output().lower()

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
            error = PortTaken if process.port_taken() else StartError
            raise error(f"{what}: {process.name} exited (code {process.popen.returncode}): {process.tail()}"
                             + (f"; {fix}" if fix else ""))  # fmt: skip
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: BLE001, S110 - not ready yet
            pass
        time.sleep(0.2)
    tail = f": {process.tail()}" if process is not None else ""
    raise StartError(f"{what}: not ready after {timeout:g} s{tail}" + (f"; {fix}" if fix else ""))
