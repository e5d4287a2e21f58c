"""The container engine `sam local invoke` talks to: podman (preferred) or a running Docker daemon.

With podman, SAM gets its own podman API service (`podman system service`), configured for root containers on these
machines (ulimits SAM cannot pass, runc, cgroupfs) and fronted by the host-network relay (`hostnet`), so the
functions reach the local stack on 127.0.0.1. The service and the relay live for one `with` block.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from upgradectl.samlocal.hostnet import HostNetworkRelay

INSTALL_HINT = (
    "no container engine: sam local invoke needs podman (Debian/Ubuntu: apt-get install -y podman runc; "
    ".ci/run installs them) or a running Docker daemon (https://docs.docker.com/engine/install/)"
)

# containers.conf of SAM's podman service. Root containers on these machines fail with "error setting rlimit type 6
# (NPROC)" unless the limits are set here (SAM cannot pass --ulimit); crun is not installed, runc is.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
volumes = {volumes}

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class EngineMissing(RuntimeError):
    """Neither podman nor a running Docker daemon is available."""


@dataclass
class ContainerEngine:
    """One engine's command line (images) and, while `serving`, the Docker API socket SAM should use."""

    command: str  # "podman" or "docker"
    docker_host: str | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _relay: HostNetworkRelay | None = field(default=None, repr=False)
    _folder: Path | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return Path(self.command).name

    def image_labels(self, image: str) -> dict[str, str] | None:
        """The image's labels, or None when the engine has no image of that name."""
        found = subprocess.run(  # noqa: S603 - fixed arguments
            [self.command, "image", "inspect", image], capture_output=True, text=True, check=False
        )
        if found.returncode != 0:
            return None
        inspected: list[dict[str, Any]] = json.loads(found.stdout)
        config = inspected[0].get("Config") or {}
        return dict(config.get("Labels") or inspected[0].get("Labels") or {})

    def import_image(self, rootfs: Path, name: str, changes: Sequence[str]) -> None:
        args = [self.command, "import", *(f"--change={change}" for change in changes), str(rootfs), name]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - fixed arguments

    def serving(self, mounts: Sequence[Path] = ()) -> ContainerEngine:
        """Start the Docker API SAM talks to (`docker_host`), with `mounts` visible read-only in every container.

        podman only: its own API service and the host-network relay. Docker: its daemon as it is (no host network:
        the functions reach the host at its bridge gateway, see docs/howto/sam-local-invoke.md).
        """
        if self.name != "podman":
            self.docker_host = None  # docker's own default
            return self
        folder = Path(tempfile.mkdtemp(prefix="sam-podman-"))
        volumes = json.dumps([f"{path}:{path}:ro" for path in mounts])
        (folder / "containers.conf").write_text(CONTAINERS_CONF.format(volumes=volumes))
        api = folder / "podman.sock"
        env = {**_environ(), "CONTAINERS_CONF": str(folder / "containers.conf")}
        log = (folder / "service.log").open("wb")
        self._process = subprocess.Popen(  # noqa: S603 - fixed arguments
            [self.command, "system", "service", "--time=0", f"unix://{api}"], env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while not api.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise EngineMissing(f"podman system service did not start: {(folder / 'service.log').read_text()}")
            time.sleep(0.1)
        self._relay = HostNetworkRelay(folder / "docker.sock", api).start()
        self._folder = folder
        self.docker_host = f"unix://{folder / 'docker.sock'}"
        return self

    def close(self) -> None:
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> ContainerEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def find_engine() -> ContainerEngine:
    """podman when installed, else docker when its daemon answers; EngineMissing (how to install one) otherwise."""
    podman = shutil.which("podman")
    if podman:
        return ContainerEngine(podman)
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0:  # noqa: S603
        return ContainerEngine(docker)
    raise EngineMissing(INSTALL_HINT)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
