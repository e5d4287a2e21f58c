"""The two Lambda layers as `sam build` makes them for Lambda (template.yaml's default Architecture, arm64): each
within its size budget, no package in both, every binary for the template's platform, the pins the tests run with.

Sizes are unzipped (what Lambda's 250 MB limit counts and what each cold start's /opt holds), measured on the build
`sam build` leaves in .aws-sam/build/<Layer>. Measured on 2026-12: SharedLayer 24.6 -> 26.8 MB (cp312 aarch64
wheels), KubernetesLayer 100.3 -> 40.1 MB (without kubernetes/aio, aiohttp's family, tzdata, and the second copy of
pydantic, pydantic_core and typing_* the Shared layer already holds).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import require_tool
from upgradectl.local.functions import ROOT
from upgradectl.samlocal.lambda_platform import (
    build_environment,
    default_architecture,
    runtime_python,
    sam_build_command,
)

MB = 1_000_000
# Unzipped bytes. The goal of issue 23 is the Kubernetes layer under 80 MB; its budget leaves room for a few MB of
# growth, not for kubernetes/aio (41 MB) nor for pydantic's second copy (about 8 MB).
BUDGET = {"SharedLayer": 32 * MB, "KubernetesLayer": 48 * MB}
ELF_MACHINE = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each layer built alone by `sam build <Layer>` for the template's default architecture (about 20 s each)."""
    sam = require_tool("sam", os.environ.get("SAM_EXECUTABLE"), str(ROOT / ".venv-sam" / "bin" / "sam"))
    architecture, python = default_architecture(), runtime_python()
    layers = {}
    for layer in BUDGET:
        build_dir = tmp_path_factory.mktemp(layer)
        done = subprocess.run(
            sam_build_command(sam, architecture, layer, build_dir),
            cwd=ROOT, env=build_environment(architecture, python), capture_output=True, text=True, timeout=900,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        layers[layer] = build_dir / layer / "python"
        assert layers[layer].is_dir(), f"{layer}: no python/ folder in its build"
    return layers


def test_each_layer_stays_within_its_size_budget(built: dict[str, Path]):
    """Breakage tried: kubernetes/aio kept (KubernetesLayer 80.6 MB > 48 MB). (pydantic and pydantic-core back in the
    Kubernetes layer stay under it: test_no_package_is_in_both_layers catches that.)"""
    sizes = {layer: _size(folder) for layer, folder in built.items()}
    over = {
        layer: f"{sizes[layer] / MB:.1f} MB > {BUDGET[layer] / MB:.0f} MB"
        for layer in built
        if sizes[layer] > BUDGET[layer]
    }
    assert over == {}, f"layers over their budget (unzipped): {over}"


def test_no_package_is_in_both_layers(built: dict[str, Path]):
    """Every cluster worker carries both layers: a package in both is a second copy in each cold start's /opt (and
    two versions of it, one shadowing the other). Breakage tried: pydantic back in the Kubernetes layer's list."""
    shared = {p.name for p in built["SharedLayer"].iterdir()}
    kubernetes = {p.name for p in built["KubernetesLayer"].iterdir()}
    assert sorted(shared & kubernetes) == []


def test_every_binary_is_for_the_template_platform(built: dict[str, Path]):
    """Wheels for the machine that builds (x86_64, cp311) would not load on arm64's python3.12: every extension
    module is an ELF for the template's architecture, tagged with the runtime's CPython version. Breakage tried: the
    Shared layer's Makefile asking for x86_64 wheels when told arm64."""
    architecture, python = default_architecture(), runtime_python()
    wrong = []
    binaries = [p for folder in built.values() for p in folder.rglob("*.so*") if p.is_file()]
    assert binaries, "no extension modules found (psycopg_binary, pydantic_core and yaml have some)"
    for path in binaries:
        header = path.read_bytes()[:20]
        machine = int.from_bytes(header[18:20], "little")
        if header[:4] != b"\x7fELF" or machine != ELF_MACHINE[architecture]:
            wrong.append(f"{path.name}: machine {machine}")
        tag = re.search(r"\.cpython-(\d)(\d+)-", path.name)
        if tag and f"{tag[1]}.{tag[2]}" != python:
            wrong.append(f"{path.name}: CPython {tag[1]}.{tag[2]}, not {python}")
    assert wrong == []


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version.strip()
    return pins


def test_the_kubernetes_layer_holds_the_versions_the_tests_run_with():
    """The layer is installed without pip's resolver (--no-deps: its list is the whole content), so each pin must be
    the one constraints.txt gives the tests. Breakage tried: python-dateutil left to the resolver (4.0.0 in the
    layer, 2.9.0.post0 in the tests)."""
    layer = _pins(ROOT / "layers" / "kubernetes" / "requirements.txt")
    constraints = _pins(ROOT / "constraints.txt")
    assert {
        name: (version, constraints.get(name)) for name, version in layer.items() if constraints.get(name) != version
    } == {}


def test_the_layer_makefiles_default_to_the_template_platform():
    """`sam build` gives a makefile build no architecture: each layer's Makefile defaults to the template's (and
    `make build` / `make sam-invoke` pass the one they build for). Breakage tried: LAMBDA_ARCHITECTURE ?= x86_64."""
    for layer in ("shared", "kubernetes"):
        makefile = (ROOT / "layers" / layer / "Makefile").read_text()
        assert f"LAMBDA_ARCHITECTURE ?= {default_architecture()}\n" in makefile, layer
        assert f"LAMBDA_PYTHON ?= {runtime_python()}\n" in makefile, layer
    assert f"LAMBDA_PYTHON := {runtime_python()}\n" in (ROOT / "Makefile").read_text()
