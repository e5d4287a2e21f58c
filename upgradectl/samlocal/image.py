"""A stand-in for the AWS Lambda base image, for machines that cannot pull public.ecr.aws (`make sam-local-image`).

`sam local invoke --skip-pull-image` builds its container on `public.ecr.aws/lambda/python:<python>-<arch>`; SAM
adds its own runtime interface emulator and the layers on top. The stand-in is built under that exact name from
Debian's packages (mmdebstrap: minbase + python3.11) and PyPI's awslambdaric and boto3 (manylinux wheels in
/var/runtime, as in the real image), with the real image's entry point, working folder and environment.

The root file system is cached outside the checkout, keyed by what goes into it:
`~/.cache/customer-upgrades/sam-local/python3.11-x86_64-<key>/rootfs.tar` ($CUSTOMER_UPGRADES_CACHE moves it), and
the imported image carries the key as a label: a second build with the same inputs does nothing. An image of that
name without our label (the real one, pulled) is left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from upgradectl.local.functions import ROOT
from upgradectl.samlocal.engine import ContainerEngine

SCRIPTS = ROOT / "scripts" / "sam-local"
REQUIREMENTS = SCRIPTS / "runtime-requirements.txt"
BOOTSTRAP = SCRIPTS / "bootstrap.py"
LABEL = "org.customer-upgrades.lambda-stand-in"
PYTHON = "3.11"
ARCHITECTURE = "x86_64"
DEBIAN_SUITE = "bookworm"  # its python3.11 is the runtime's minor version
PIP_PLATFORM = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
# The real image's configuration (docker inspect public.ecr.aws/lambda/python:3.11): SAM starts its emulator as the
# entry point and the emulator runs /var/runtime/bootstrap.
ENVIRONMENT = {
    "LANG": "en_US.UTF-8",
    "TZ": ":/etc/localtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
}
BOOTSTRAP_SH = "#!/bin/sh\nexec /usr/bin/python3.11 /var/runtime/bootstrap.py\n"
# The real image's entry point runs the emulator or the bootstrap; SAM always replaces it with its emulator.
ENTRYPOINT_SH = '#!/bin/sh\nexec /var/runtime/bootstrap "$@"\n'
RECIPE = 1  # bump when _build_rootfs changes what it makes (the cache key)


def cache_root() -> Path:
    return Path(os.environ.get("CUSTOMER_UPGRADES_CACHE") or Path.home() / ".cache" / "customer-upgrades")


@dataclass(frozen=True)
class StandIn:
    python: str = PYTHON
    architecture: str = ARCHITECTURE

    @property
    def name(self) -> str:
        """The name SAM looks for (samcli: public.ecr.aws/lambda/python:<version>-<arch>)."""
        return f"public.ecr.aws/lambda/python:{self.python}-{self.architecture}"

    @property
    def key(self) -> str:
        """What the image is made of: the recipe's version, bootstrap, pins, environment, suite and platform."""
        digest = hashlib.sha256()
        for part in (BOOTSTRAP, REQUIREMENTS):
            digest.update(part.read_bytes())
        recipe = [RECIPE, BOOTSTRAP_SH, ENTRYPOINT_SH, ENVIRONMENT, DEBIAN_SUITE, self.python, self.architecture]
        digest.update(json.dumps(recipe).encode())
        return digest.hexdigest()[:16]

    @property
    def folder(self) -> Path:
        return cache_root() / "sam-local" / f"python{self.python}-{self.architecture}-{self.key}"


def build_stand_in(engine: ContainerEngine, stand_in: StandIn | None = None, *, log: bool = True) -> str:
    """Make `stand_in.name` exist in `engine`: import the cached root file system, building it first if needed.

    Returns what was done: "present" (this key's image is there), "kept" (an image of that name not ours: the
    real one), "imported" (from the cache) or "built".
    """
    stand_in = stand_in or StandIn()
    labels = engine.image_labels(stand_in.name)
    if labels is not None and labels.get(LABEL) == stand_in.key:
        return "present"
    if labels is not None and LABEL not in labels:
        return "kept"
    rootfs = stand_in.folder / "rootfs.tar"
    done = "imported"
    if not rootfs.is_file():
        _build_rootfs(stand_in, rootfs, log=log)
        done = "built"
        for older in rootfs.parent.parent.glob(f"python{stand_in.python}-{stand_in.architecture}-*"):
            if older != rootfs.parent:  # an earlier recipe's root file system (about 220 MB each)
                shutil.rmtree(older, ignore_errors=True)
    changes = [
        'ENTRYPOINT ["/lambda-entrypoint.sh"]',
        "WORKDIR /var/task",
        f"LABEL {LABEL}={stand_in.key}",
        *(f"ENV {name}={value}" for name, value in ENVIRONMENT.items()),
    ]
    engine.import_image(rootfs, stand_in.name, changes)
    return done


def _build_rootfs(stand_in: StandIn, target: Path, *, log: bool) -> None:
    """Debian minbase + python3.11 (mmdebstrap), /var/runtime with awslambdaric and boto3, as one tar."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise SystemExit("the stand-in image needs mmdebstrap (install: apt-get install -y mmdebstrap)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sam-stand-in-") as tmp:
        runtime = Path(tmp) / "runtime"
        subprocess.run(  # noqa: S603 - fixed arguments
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(runtime),
             "--only-binary=:all:", "--platform", PIP_PLATFORM[stand_in.architecture],
             "--python-version", stand_in.python, "--implementation", "cp", "-r", str(REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        shutil.copy(BOOTSTRAP, runtime / "bootstrap.py")
        (runtime / "bootstrap").write_text(BOOTSTRAP_SH)
        (runtime / "bootstrap").chmod(0o755)
        entrypoint = Path(tmp) / "lambda-entrypoint.sh"
        entrypoint.write_text(ENTRYPOINT_SH)
        entrypoint.chmod(0o755)
        partial = target.with_suffix(".partial")
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        mirror = [str(sources)] if sources.is_file() else []  # the machine's own mirrors, else deb.debian.org
        subprocess.run(  # noqa: S603 - fixed arguments
            [mmdebstrap, "--variant=minbase", f"--architectures={DEBIAN_ARCH[stand_in.architecture]}",
             f"--include=python{stand_in.python},ca-certificates", "--format=tar", *([] if log else ["--quiet"]),
             "--customize-hook=mkdir -p \"$1/var/task\" \"$1/opt\"",
             f"--customize-hook=copy-in {runtime} /var",
             f"--customize-hook=copy-in {entrypoint} /",
             DEBIAN_SUITE, str(partial), *mirror],
            check=True,
        )  # fmt: skip
        partial.replace(target)
