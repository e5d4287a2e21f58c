"""Command-line tools some tests drive (sam, podman, curl, jq, node, prometheus, cfn-lint, openapi-python-client,
docker-registry, skopeo).

Under CI (`CI` set, as `.ci/run` does) a missing tool fails the test: CI must not go green by
skipping. On a developer machine it skips with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

INSTALL = {
    "curl": "apt-get install -y curl",
    "jq": "apt-get install -y jq",
    "sam": "make setup (installs aws-sam-cli into .venv-sam)",
    "chromium": "apt-get install -y chromium",
    "prometheus": "apt-get install -y prometheus (Debian's package; .ci/run installs it)",
    "cfn-lint": "make setup (requirements-dev.txt installs it into .venv)",
    "openapi-python-client": "make setup (requirements-dev.txt installs it into .venv)",
    "podman": "apt-get install -y podman runc (.ci/run installs them)",
    "mmdebstrap": "apt-get install -y mmdebstrap (.ci/run installs it)",
    "node": "apt-get install -y nodejs (.ci/run installs it)",
    "docker-registry": "apt-get install -y docker-registry (.ci/run installs it)",
    "skopeo": "apt-get install -y skopeo (.ci/run installs it)",
}


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_module(name: str, install: str) -> None:
    """Import `name` (a test dependency); fail under CI, skip elsewhere, naming `install`, if it is missing."""
    try:
        __import__(name)
    except ImportError:
        message = f"the Python package {name} is not installed (install: {install})"
        if under_ci():
            pytest.fail(f"{message}; CI must run every test", pytrace=False)
        pytest.skip(message)


def require_tool(name: str, *candidates: str | None) -> str:
    """The tool's path: the first executable of `candidates`, else `name` on PATH; fail or skip if none."""
    for candidate in [*candidates, shutil.which(name)]:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    message = f"{name} is not installed (install: {INSTALL.get(name, name)})"
    if under_ci():
        pytest.fail(f"{message}; CI must run every test", pytrace=False)
    pytest.skip(message)
