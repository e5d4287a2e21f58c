"""A real OCI registry on 127.0.0.1 (Debian's docker-registry) holding the project's charts, pushed there
with the real `helm push`: the helm Jobs pull them the way production pulls its charts
(CHART_REFS = oci://127.0.0.1:<port>/charts/<chart>).

Which protocol depends on the helm, and the Jobs' helm argv needs no flag either way (measured):
helm 3.17 speaks plain HTTP to a registry on 127.0.0.1 by itself (to a TLS one it sent
`HEAD http://127.0.0.1:...`: 400), helm 4.1 speaks HTTPS ("server gave HTTP response to HTTPS client"
from a plain one). So the registry is plain HTTP for helm 3 and TLS (a certificate from the local CA,
which the agent's helm trusts through SSL_CERT_FILE) for helm 4; loopback only in both cases."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from upgradectl.local.realcluster.pki import Pki
from upgradectl.local.realcluster.processes import StartError
from upgradectl.local.registry import LocalRegistry
from upgradectl.local.simcluster.charts import ChartVersion, write_chart_dir

CHART_PATH = "charts"


class ChartRegistry:
    def __init__(self, directory: Path, pki: Pki, *, tls: bool) -> None:
        self.directory = directory
        self.pki = pki
        self.tls = tls
        self.server = LocalRegistry(directory)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def host(self) -> str:
        return self.server.host

    def chart_ref(self, chart_name: str) -> str:
        return f"oci://{self.host}/{CHART_PATH}/{chart_name}"

    def start(self) -> ChartRegistry:
        certificate = self.pki.issue("registry", common_name="chart-registry") if self.tls else None
        self.server.start(tls=certificate, ca_file=self.pki.ca_cert, what="start the chart registry")
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
        self.server.stop()
