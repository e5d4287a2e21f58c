"""A real OCI registry on 127.0.0.1 (Debian's docker-registry) holding the project's charts, pushed there
with the real `helm push`: the helm Jobs pull them the way production pulls its charts
(CHART_REFS = oci://127.0.0.1:<port>/charts/<chart>).

Which protocol depends on the helm, and the Jobs' helm argv needs no flag either way (measured):
helm 3.17 speaks plain HTTP to a registry on 127.0.0.1 by itself (to a TLS one it sent
`HEAD http://127.0.0.1:...`: 400), helm 4.1 speaks HTTPS ("server gave HTTP response to HTTPS client"
from a plain one). So the registry is plain HTTP for helm 3 and TLS (a certificate from the local CA,
which the agent's helm trusts through SSL_CERT_FILE) for helm 4; loopback only in both cases."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from upgradectl.local.realcluster.pki import Pki
from upgradectl.local.realcluster.processes import Process, StartError, free_port, wait_until
from upgradectl.local.simcluster.charts import ChartVersion, write_chart_dir

CHART_PATH = "charts"


class ChartRegistry:
    def __init__(self, directory: Path, pki: Pki, *, tls: bool) -> None:
        self.directory = directory
        self.pki = pki
        self.tls = tls
        self.port = 0
        self.process: Process | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def chart_ref(self, chart_name: str) -> str:
        return f"oci://{self.host}/{CHART_PATH}/{chart_name}"

    def start(self) -> ChartRegistry:
        binary = shutil.which("docker-registry")
        if not binary:
            raise StartError("start the chart registry: no docker-registry binary; apt-get install docker-registry "
                             "(scripts/realk8s/build-control-plane.sh installs it)")  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.tls:
            cert, key = self.pki.issue("registry", common_name="chart-registry")
        self.port = free_port()
        config = self.directory / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.directory / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + (f"  tls:\n    certificate: {cert}\n    key: {key}\n" if self.tls else ""),
            encoding="utf-8",
        )
        self.process = Process("docker-registry", [binary, "serve", str(config)], self.directory / "registry.log")
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        url = f"{'https' if self.tls else 'http'}://{self.host}/v2/"
        wait_until("start the chart registry", lambda: urllib.request.urlopen(url, timeout=2, context=context)  # noqa: S310
                   .status == 200, 30, self.process)  # fmt: skip
        return self

    def push(self, helm_path: Path, charts: list[ChartVersion], env: dict[str, str]) -> None:
        """`helm package` + `helm push` of each chart version (the real helm, argv lists)."""
        with tempfile.TemporaryDirectory() as tmp:
            for chart in charts:
                source = write_chart_dir(chart, Path(tmp) / "src" / chart.version)
                out = Path(tmp) / "out"
                self._helm(helm_path, env, "package", str(source), "--destination", str(out))
                package = out / f"{chart.name}-{chart.version}.tgz"
                self._helm(helm_path, env, "push", str(package), f"oci://{self.host}/{CHART_PATH}")

    @staticmethod
    def _helm(helm_path: Path, env: dict[str, str], *args: str) -> None:
        result = subprocess.run(
            [str(helm_path), *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )  # noqa: S603
        if result.returncode != 0:
            raise StartError(f"push the charts: helm {args[0]} failed: {result.stderr.strip()[-300:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
