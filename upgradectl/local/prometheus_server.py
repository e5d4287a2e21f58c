"""A real Prometheus (Debian's `/usr/bin/prometheus`) on 127.0.0.1, its data in a temporary folder, scraping
the given targets: the local stack's `--analysis` and the analysis tests use it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from upgradectl.local.realcluster.processes import PORT_TAKEN, PortTaken, free_port, on_free_ports

DEBIAN_BINARY = "/usr/bin/prometheus"


class PrometheusUnavailable(RuntimeError):
    pass


class PrometheusPortTaken(PortTaken, PrometheusUnavailable):
    """Its port, free when chosen, was taken before prometheus bound it (on_free_ports chooses again)."""


def find_binary() -> str | None:
    return shutil.which("prometheus") or (DEBIAN_BINARY if Path(DEBIAN_BINARY).is_file() else None)


class PrometheusServer:
    def __init__(
        self, binary: str, targets: list[str], *, scrape_seconds: float = 1.0, folder: Path | None = None
    ) -> None:
        self._binary = binary
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="upgrade-prometheus-"))
        config = self.folder / "prometheus.yml"
        interval = f"{max(1, round(scrape_seconds * 1000))}ms"
        config.write_text(json.dumps({
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "workloads", "static_configs": [{"targets": targets}]}],
        }))  # fmt: skip
        self._config = config
        self.url = ""  # http://127.0.0.1:<port> once started
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 30.0) -> PrometheusServer:
        """Serve, ready, on a port chosen free (chosen again when something took it before prometheus bound it)."""
        return on_free_ports(lambda: self._serve(ready_within))

    def _serve(self, ready_within: float) -> PrometheusServer:
        self.url = f"http://127.0.0.1:{free_port()}"
        log = (self.folder / "prometheus.log").open("w")  # each attempt's own log
        self._process = subprocess.Popen(
            [self._binary, f"--config.file={self._config}", f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                taken = PORT_TAKEN in self.log_tail().lower()
                raise (PrometheusPortTaken if taken else PrometheusUnavailable)(f"prometheus exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:  # noqa: S310 - our own URL
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusUnavailable(f"prometheus not ready in {ready_within:g} s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.folder / "prometheus.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
