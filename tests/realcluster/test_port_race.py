"""A port chosen free can be taken before the server binds it (another test's server, an outgoing connection's
ephemeral port). The servers the project starts choose again instead of failing the whole start: etcd,
kube-apiserver, docker-registry and prometheus. Each test here takes the first port chosen away on purpose."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realcluster.conftest import require_real_cluster
from tests.support.tools import require_tool
from upgradectl.local import prometheus_server, registry
from upgradectl.local.realcluster import controlplane
from upgradectl.local.realcluster.controlplane import ControlPlane, etcd_binary
from upgradectl.local.realcluster.processes import PORT_ATTEMPTS, PortTaken, free_port


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def taken_first(monkeypatch: pytest.MonkeyPatch, module: object, port: int, times: int = 1) -> list[int]:
    """`module.free_port` answers `port` the first `times` calls, then a really free port; the answers."""
    answers: list[int] = []

    def chosen() -> int:
        answers.append(port if len(answers) < times else free_port())
        return answers[-1]

    monkeypatch.setattr(module, "free_port", chosen)
    return answers


def test_etcd_chooses_again_when_its_port_was_taken(
    tmp_path: Path, taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_real_cluster()
    answers = taken_first(monkeypatch, controlplane, taken)
    plane = ControlPlane(tmp_path / "cp", tmp_path)
    plane.directory.mkdir()
    (tmp_path / "cp" / "logs").mkdir()
    try:
        client_port = controlplane.on_free_ports(lambda: plane._start_etcd(etcd_binary(), tmp_path / "cp" / "logs"))
        assert client_port != taken
        assert answers[0] == taken and len(answers) == 6, answers  # 3 ports, twice
        with urllib.request.urlopen(f"http://127.0.0.1:{client_port}/health", timeout=5) as response:  # noqa: S310
            assert response.status == 200
        first, second = plane.processes
        assert not first.alive() and first.port_taken(), first.tail()
        assert second.alive() and not second.port_taken()
    finally:
        plane.stop()


def failing_binaries(tmp_path: Path, says: str) -> tuple[Path, Path]:
    """(bin directory, starts file): a kube-apiserver (and controller manager) that writes its argv to the starts
    file, says `says` on stderr and exits 1."""
    require_real_cluster()
    bins = tmp_path / "bin"
    bins.mkdir()
    starts = tmp_path / "starts"
    for name in ("kube-apiserver", "kube-controller-manager"):
        (bins / name).write_text(f'#!/bin/sh\necho "$@" >> {starts}\necho "{says}" >&2\nexit 1\n')
        (bins / name).chmod(0o755)
    return bins, starts


def test_the_api_server_chooses_again_and_gives_up_after_three_attempts(tmp_path: Path) -> None:
    """A kube-apiserver that always finds its port taken: three attempts on three ports, then one line."""
    bins, starts = failing_binaries(tmp_path, "listen tcp 127.0.0.1:1: bind: address already in use")
    plane = ControlPlane(tmp_path / "cp", bins)
    with pytest.raises(
        PortTaken, match=r"^start kube-apiserver: kube-apiserver exited \(code 1\): .*address already in use"
    ):
        plane.start()
    ports = [arg.split("=")[1] for line in starts.read_text().splitlines() for arg in line.split()
             if arg.startswith("--secure-port=")]  # fmt: skip
    assert len(ports) == PORT_ATTEMPTS and len(set(ports)) == PORT_ATTEMPTS, ports


def test_another_failure_is_not_retried(tmp_path: Path) -> None:
    bins, starts = failing_binaries(tmp_path, "unknown flag")
    with pytest.raises(controlplane.StartError, match="unknown flag") as raised:
        ControlPlane(tmp_path / "cp", bins).start()
    assert not isinstance(raised.value, PortTaken)
    assert len(starts.read_text().splitlines()) == 1


def test_the_registry_chooses_again_when_its_port_was_taken(tmp_path: Path, taken: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    require_tool("docker-registry")
    answers = taken_first(monkeypatch, registry, taken, times=2)
    started = registry.LocalRegistry(tmp_path / "registry").start()
    try:
        assert answers[:2] == [taken, taken] and started.port == answers[2] != taken
        with urllib.request.urlopen(f"http://{started.host}/v2/", timeout=5) as response:  # noqa: S310
            assert response.status == 200
    finally:
        started.stop()


def test_a_registry_on_a_given_port_that_is_taken_fails_naming_it(tmp_path: Path, taken: int) -> None:
    require_tool("docker-registry")
    with pytest.raises(PortTaken, match=r"address already in use"):
        registry.LocalRegistry(tmp_path / "registry").start(taken)


def test_prometheus_chooses_again_when_its_port_was_taken(tmp_path: Path, taken: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    binary = require_tool("prometheus", prometheus_server.DEBIAN_BINARY)
    answers = taken_first(monkeypatch, prometheus_server, taken)
    (tmp_path / "prometheus").mkdir()
    server = prometheus_server.PrometheusServer(binary, [], folder=tmp_path / "prometheus").start()
    try:
        assert answers[0] == taken and server.url == f"http://127.0.0.1:{answers[1]}"
    finally:
        server.stop()
