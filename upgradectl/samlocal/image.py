"""A stand-in for the AWS Lambda base image, for machines that cannot pull public.ecr.aws (`make sam-local-image`).

`sam local invoke --skip-pull-image` builds its container on `public.ecr.aws/lambda/python:<python>-<arch>`; SAM
adds its own runtime interface emulator and the layers on top. The stand-in is built under that exact name, for the
template's runtime (Globals.Function.Runtime) and this machine's architecture: Debian's minbase with the libraries
CPython links to (mmdebstrap), the machine's own CPython build of that version in /var/lang (where the real image
has it; pyenv's: Debian 12 ships no python3.12), and PyPI's awslambdaric and boto3 (manylinux wheels in
/var/runtime, as in the real image), with the real image's entry point, working folder and environment.

The root file system is cached outside the checkout, keyed by what goes into it:
`~/.cache/customer-upgrades/sam-local/python3.12-x86_64-<key>/rootfs.tar` ($CUSTOMER_UPGRADES_CACHE moves it), and
the imported image carries the key as a label: a second build with the same inputs does nothing. An image of that
name without our label (the real one, pulled) is left alone.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from upgradectl.local.functions import ROOT
from upgradectl.samlocal.engine import ContainerEngine
from upgradectl.samlocal.lambda_platform import build_environment, host_architecture, runtime_python

SCRIPTS = ROOT / "scripts" / "sam-local"
REQUIREMENTS = SCRIPTS / "runtime-requirements.txt"
BOOTSTRAP = SCRIPTS / "bootstrap.py"
LABEL = "org.customer-upgrades.lambda-stand-in"
DEBIAN_SUITE = "bookworm"
# What the CPython build in /var/lang links to (ldd of its binary and lib-dynload; not tkinter's X11 and Tk).
DEBIAN_LIBRARIES = ("ca-certificates", "libssl3", "libffi8", "libexpat1", "libsqlite3-0", "libncursesw6",
                    "libreadline8", "libbz2-1.0", "liblzma5", "zlib1g", "libuuid1", "libtirpc3", "libnsl2")  # fmt: skip
# Left out of /var/lang (paths under the CPython prefix; {v} its version): what no function imports and the real
# image does not ship either. Only these paths: a name pattern would also drop the standard library's pydoc.py.
PYTHON_LEFT_OUT = ("include", "share", "lib/pkgconfig", "lib/libpython{v}.a", "lib/python{v}/test",
                   "lib/python{v}/idlelib", "lib/python{v}/tkinter", "lib/python{v}/turtledemo",
                   "lib/python{v}/ensurepip", "lib/python{v}/site-packages", "lib/python{v}/config-{v}-*")  # fmt: skip
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
BOOTSTRAP_SH = "#!/bin/sh\nexec /var/lang/bin/python{python} /var/runtime/bootstrap.py\n"
# The real image's entry point runs the emulator or the bootstrap; SAM always replaces it with its emulator.
ENTRYPOINT_SH = '#!/bin/sh\nexec /var/runtime/bootstrap "$@"\n'
RECIPE = 2  # bump when _build_rootfs changes what it makes (the cache key)


def cache_root() -> Path:
    return Path(os.environ.get("CUSTOMER_UPGRADES_CACHE") or Path.home() / ".cache" / "customer-upgrades")


@dataclass(frozen=True)
class StandIn:
    python: str = field(default_factory=runtime_python)
    architecture: str = field(default_factory=host_architecture)

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
        recipe = [RECIPE, BOOTSTRAP_SH, ENTRYPOINT_SH, ENVIRONMENT, DEBIAN_SUITE, DEBIAN_LIBRARIES, PYTHON_LEFT_OUT,
                  self.python, self.architecture]  # fmt: skip
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


def python_home(version: str, architecture: str) -> Path:
    """The machine's own CPython <version> (its prefix), copied into the image's /var/lang.

    It must be a build of its own prefix (pyenv's, or ./configure --prefix): a distribution's python3.x is spread
    over /usr. It runs in the image only on this machine's architecture.
    """
    if architecture != host_architecture():
        raise SystemExit(f"the stand-in for {architecture} needs a {architecture} machine (this one is "
                         f"{host_architecture()}): its Python is this machine's own")  # fmt: skip
    env = build_environment(architecture, version)
    found = subprocess.run(  # noqa: S603 - fixed arguments
        [f"python{version}", "-c", "import sys, sysconfig; print(sys.base_prefix, sysconfig.get_config_var('LDLIBRARY'))"],
        capture_output=True, text=True, env=env, check=False,
    ) if shutil.which(f"python{version}", path=env.get("PATH")) else None  # fmt: skip
    if found is None or found.returncode != 0:
        raise SystemExit(f"the stand-in image needs python{version} (the template's runtime): pyenv install {version}")
    prefix = Path(found.stdout.split()[0])
    if prefix == Path("/usr") or not (prefix / "bin" / f"python{version}").is_file():
        raise SystemExit(f"the stand-in image needs a python{version} of its own prefix, not {prefix} (a "
                         f"distribution's is spread over /usr): pyenv install {version}")  # fmt: skip
    return prefix


def _left_out(home: Path, version: str) -> Callable[[str, list[str]], set[str]]:
    """copytree's `ignore`: the names in a folder whose path under `home` matches PYTHON_LEFT_OUT."""
    patterns = [pattern.format(v=version) for pattern in PYTHON_LEFT_OUT]

    def ignore(folder: str, names: list[str]) -> set[str]:
        under = Path(folder).relative_to(home)
        return {name for name in names if any(fnmatch.fnmatchcase(str(under / name), p) for p in patterns)}

    return ignore


def _build_rootfs(stand_in: StandIn, target: Path, *, log: bool) -> None:
    """Debian minbase + CPython's libraries (mmdebstrap), /var/lang the machine's CPython, /var/runtime with
    awslambdaric and boto3, as one tar."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise SystemExit("the stand-in image needs mmdebstrap (install: apt-get install -y mmdebstrap)")
    home = python_home(stand_in.python, stand_in.architecture)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sam-stand-in-") as tmp:
        lang = Path(tmp) / "lang"
        shutil.copytree(home, lang, symlinks=True, ignore=_left_out(home, stand_in.python))
        runtime = Path(tmp) / "runtime"
        subprocess.run(  # noqa: S603 - fixed arguments
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(runtime),
             "--only-binary=:all:", "--platform", PIP_PLATFORM[stand_in.architecture],
             "--python-version", stand_in.python, "--implementation", "cp", "-r", str(REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        shutil.copy(BOOTSTRAP, runtime / "bootstrap.py")
        (runtime / "bootstrap").write_text(BOOTSTRAP_SH.format(python=stand_in.python))
        (runtime / "bootstrap").chmod(0o755)
        entrypoint = Path(tmp) / "lambda-entrypoint.sh"
        entrypoint.write_text(ENTRYPOINT_SH)
        entrypoint.chmod(0o755)
        partial = target.with_suffix(".partial")
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        mirror = [str(sources)] if sources.is_file() else []  # the machine's own mirrors, else deb.debian.org
        subprocess.run(  # noqa: S603 - fixed arguments
            [mmdebstrap, "--variant=minbase", f"--architectures={DEBIAN_ARCH[stand_in.architecture]}",
             f"--include={','.join(DEBIAN_LIBRARIES)}", "--format=tar", *([] if log else ["--quiet"]),
             "--customize-hook=mkdir -p \"$1/var/task\" \"$1/opt\"",
             f"--customize-hook=copy-in {lang} {runtime} /var",
             f"--customize-hook=copy-in {entrypoint} /",
             DEBIAN_SUITE, str(partial), *mirror],
            check=True,
        )  # fmt: skip
        partial.replace(target)
