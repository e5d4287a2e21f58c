"""A real cluster that cannot start says which step failed and how to fix it, in one line, and leaves no
process behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from tests.realcluster.conftest import require_real_cluster
from upgradectl.local.realcluster import controlplane
from upgradectl.local.realcluster.controlplane import ControlPlane
from upgradectl.local.realcluster.processes import StartError


def fake_binaries(directory: Path, script: str) -> Path:
    directory.mkdir()
    for name in ("kube-apiserver", "kube-controller-manager"):
        path = directory / name
        path.write_text(script)
        path.chmod(0o755)
    return directory


def test_missing_binaries_name_the_build_script(tmp_path: Path) -> None:
    with pytest.raises(StartError, match=r"kube-apiserver is missing; run scripts/realk8s/build-control-plane.sh"):
        ControlPlane(tmp_path / "cp", tmp_path / "nothing-here").start()


def test_a_missing_etcd_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bins = fake_binaries(tmp_path / "bin", "#!/bin/sh\nexit 0\n")
    monkeypatch.setattr(controlplane.shutil, "which", lambda name: None)
    with pytest.raises(StartError, match=r"start etcd: no etcd binary; install Debian's etcd-server"):
        ControlPlane(tmp_path / "cp", bins).start()


def test_an_api_server_that_dies_is_named_and_etcd_is_stopped(tmp_path: Path) -> None:
    require_real_cluster()
    bins = fake_binaries(tmp_path / "bin", "#!/bin/sh\necho 'bind: address already in use' >&2\nexit 1\n")
    plane = ControlPlane(tmp_path / "cp", bins)
    with pytest.raises(StartError) as raised:
        plane.start()
    message = str(raised.value)
    assert message.startswith("start kube-apiserver: kube-apiserver exited (code 1): bind: address already in use"), (
        message
    )
    assert "\n" not in message
    # etcd had started (the API server came after it) and is gone again
    etcd = shutil.which("etcd")
    assert not [p for p in psutil.process_iter(["exe", "cmdline"])
                if p.info["exe"] == etcd and str(tmp_path) in " ".join(p.info["cmdline"] or [])]  # fmt: skip
