"""`make sam-local-image` (upgradectl/samlocal/image.py): built once per recipe, cached outside the checkout, the
real image never replaced. The build itself runs in test_sam_invoke.py's end-to-end test."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from upgradectl.samlocal import image
from upgradectl.samlocal.image import LABEL, StandIn, build_stand_in
from upgradectl.samlocal.lambda_platform import host_architecture


class FakeEngine:
    def __init__(self, labels: dict[str, str] | None) -> None:
        self.labels = labels
        self.imported: list[tuple[Path, str, list[str]]] = []

    def image_labels(self, name: str) -> dict[str, str] | None:
        return self.labels

    def import_image(self, rootfs: Path, name: str, changes: Sequence[str]) -> None:
        self.imported.append((rootfs, name, list(changes)))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CUSTOMER_UPGRADES_CACHE", str(tmp_path))

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the root file system was built again")

    monkeypatch.setattr(image, "_build_rootfs", no_build)
    return tmp_path


def test_a_cached_root_file_system_is_imported_under_the_name_sam_looks_for(cache: Path):
    """Breakage tried: the key label left off the import (every later run imported the 220 MB again)."""
    stand_in = StandIn()
    assert stand_in.folder.is_relative_to(cache)
    stand_in.folder.mkdir(parents=True)
    (stand_in.folder / "rootfs.tar").write_bytes(b"tar")
    engine = FakeEngine(labels=None)
    assert build_stand_in(engine, stand_in) == "imported"  # type: ignore[arg-type]
    [(rootfs, name, changes)] = engine.imported
    # the template's runtime (python3.12), the machine's architecture (its containers run here)
    assert name == f"public.ecr.aws/lambda/python:3.12-{host_architecture()}"
    assert rootfs == stand_in.folder / "rootfs.tar"
    assert f"LABEL {LABEL}={stand_in.key}" in changes
    assert 'ENTRYPOINT ["/lambda-entrypoint.sh"]' in changes and "WORKDIR /var/task" in changes


def test_the_image_of_this_recipe_is_not_touched_and_the_real_one_is_kept(cache: Path):
    """Breakages tried: the label compared with the wrong key (rebuilt every time); an image without our label
    (the real one, pulled) replaced by the stand-in."""
    stand_in = StandIn()
    ours = FakeEngine(labels={LABEL: stand_in.key})
    assert build_stand_in(ours, stand_in) == "present"  # type: ignore[arg-type]
    real = FakeEngine(labels={"com.amazonaws.lambda.platform.kernel": "k5.10"})
    assert build_stand_in(real, stand_in) == "kept"  # type: ignore[arg-type]
    assert ours.imported == [] and real.imported == []


def test_the_key_follows_what_goes_into_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Breakage tried: a key of the python version and architecture only (a new awslambdaric pin kept the old
    image)."""
    before = StandIn().key
    pins = tmp_path / "runtime-requirements.txt"
    pins.write_text(image.REQUIREMENTS.read_text().replace("awslambdaric==", "awslambdaric>="))
    monkeypatch.setattr(image, "REQUIREMENTS", pins)
    assert StandIn().key != before


def test_only_the_named_paths_of_the_python_build_are_left_out(tmp_path: Path):
    """Breakage tried: name patterns (shutil.ignore_patterns "pydoc*", "test", ...): the standard library's pydoc.py
    went too, and every cluster worker raised ModuleNotFoundError: No module named 'pydoc' (the kubernetes client
    imports it) in the sam-invoke run."""
    home = tmp_path / "3.12.1"
    stdlib = home / "lib" / "python3.12"
    for path in ("pydoc.py", "pydoc_data/topics.py", "test/test_os.py", "site-packages/x.py", "unittest/test/a.py",
                 "config-3.12-x86_64-linux-gnu/Makefile", "json/__init__.py"):  # fmt: skip
        (stdlib / path).parent.mkdir(parents=True, exist_ok=True)
        (stdlib / path).write_text("")
    (home / "include" / "python3.12").mkdir(parents=True)
    (home / "bin").mkdir()
    (home / "bin" / "pydoc3.12").write_text("")
    copy = tmp_path / "lang"
    shutil.copytree(home, copy, ignore=image._left_out(home, "3.12"))
    kept = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file())
    assert kept == [
        "bin/pydoc3.12",
        "lib/python3.12/json/__init__.py",
        "lib/python3.12/pydoc.py",
        "lib/python3.12/pydoc_data/topics.py",
        "lib/python3.12/unittest/test/a.py",
    ]
