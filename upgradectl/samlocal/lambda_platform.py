"""The Lambda platform of template.yaml (runtime, architecture) and how to build it with `sam build`.

The template deploys arm64 (parameter `Architecture`, default arm64) on the runtime of `Globals.Function.Runtime`.
Both layers are built by their Makefiles (layers/*/Makefile) for LAMBDA_ARCHITECTURE and LAMBDA_PYTHON, which
must agree with the template's parameter: `sam_build_command` sets both. `sam local invoke` on this machine runs
the machine's own architecture (its containers run here), so `make sam-invoke` builds and invokes with
`Architecture=<the machine's>`.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import yaml

from upgradectl.local.functions import ROOT

TEMPLATE = ROOT / "template.yaml"
LAMBDA_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


class _AnyTag(yaml.SafeLoader):
    """template.yaml with CloudFormation's short tags (!Ref, !Sub, ...) read as plain values."""


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: None)


def _template(template: Path = TEMPLATE) -> dict:
    return dict(yaml.load(template.read_text(), Loader=_AnyTag))  # noqa: S506 - SafeLoader subclass


def runtime_python(template: Path = TEMPLATE) -> str:
    """The functions' Python version ("3.12" of Runtime: python3.12)."""
    runtime = str(_template(template)["Globals"]["Function"]["Runtime"])
    if not runtime.startswith("python"):
        raise ValueError(f"template.yaml: Globals.Function.Runtime is {runtime!r}, not a python runtime")
    return runtime.removeprefix("python")


def default_architecture(template: Path = TEMPLATE) -> str:
    """What `sam deploy` uses unless told otherwise: the Architecture parameter's default."""
    return str(_template(template)["Parameters"]["Architecture"]["Default"])


def host_architecture() -> str:
    """This machine's architecture in Lambda's words (x86_64, arm64): what a local container can run."""
    machine = platform.machine().lower()
    if machine not in LAMBDA_ARCHITECTURES:
        raise SystemExit(f"sam local invoke: Lambda has no architecture for this machine ({machine})")
    return LAMBDA_ARCHITECTURES[machine]


def build_environment(architecture: str, python: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """`sam build`'s environment: the layers' Makefile variables, and a python<version> on PATH (SAM's python
    build of the functions asks for the runtime's interpreter; under pyenv, its newest <version>.x)."""
    env = dict(os.environ if environ is None else environ)
    env.update({"LAMBDA_ARCHITECTURE": architecture, "LAMBDA_PYTHON": python, "SAM_CLI_TELEMETRY": "0"})
    if "PYENV_VERSION" not in env or not env["PYENV_VERSION"].startswith(f"{python}."):
        pyenv_version = _pyenv_version(python, env)
        if pyenv_version:
            env["PYENV_VERSION"] = pyenv_version
    return env


def _pyenv_version(python: str, env: dict[str, str]) -> str | None:
    pyenv = shutil.which("pyenv", path=env.get("PATH"))
    if pyenv is None:
        return None
    done = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, env=env, check=False)  # noqa: S603
    found = [v for v in done.stdout.split() if v.startswith(f"{python}.") and v.removeprefix(f"{python}.").isdigit()]
    return max(found, key=lambda v: int(v.rsplit(".", 1)[1])) if found else None


def sam_build_command(
    sam: str, architecture: str, resource: str | None = None, build_dir: Path | None = None
) -> list[str]:
    """--no-cached: SAM's build cache keys a makefile layer by its source and a BuildArchitecture that is always
    x86_64, not by LAMBDA_ARCHITECTURE, so samconfig.toml's `cached = true` could hand an arm64 build the x86_64
    layers of the last local invoke (or the reverse)."""
    only = [resource] if resource else []
    into = ["--build-dir", str(build_dir)] if build_dir else []
    # --parameter-overrides last: it takes every word after it
    return [sam, "build", *only, *into, "--no-cached", "--parameter-overrides", f"Architecture={architecture}"]
