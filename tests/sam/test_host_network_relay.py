"""The relay between SAM and podman's API (upgradectl/samlocal/hostnet.py): SAM's Lambda containers are created in
the host's network namespace with the emulator on loopback; every other request and every answer passes unchanged."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from upgradectl.samlocal.hostnet import HostNetworkRelay, host_network


def sam_lambda_container() -> dict[str, Any]:
    """What SAM 1.170 sends for `sam local invoke` (docker-py's create body, captured through the relay)."""
    return {
        "Image": "samcli/lambda-python:3.11-x86_64-ea35a2dafa693f01cf9de8ed7",
        "Entrypoint": ["/var/rapid/aws-lambda-rie", "--log-level", "error"],
        "Env": ["DATABASE_URL=postgresql://postgres@127.0.0.1:5432/upgrades"],
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"sam.cli.container.type": "lambda", "sam.cli.function.name": "ApiDeployFunction"},
        "HostConfig": {
            "NetworkMode": "default",
            "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "6935"}]},
            "Binds": ["/work/.aws-sam/build/ApiDeployFunction:/var/task:ro,delegated"],
        },
    }


def test_a_sam_lambda_container_runs_in_the_host_network_with_the_emulator_on_loopback():
    """Breakages tried: NetworkMode left "default" (the function reached the stack only through the bridge
    gateway); the emulator address left off (it listened on 0.0.0.0:8080 of the host, SAM called 6935 and
    waited); the Runtime API port left at 9001 (two containers at once collide)."""
    moved = host_network(sam_lambda_container(), free_port=lambda: 41234)
    assert moved["HostConfig"]["NetworkMode"] == "host"
    assert "PortBindings" not in moved["HostConfig"] and "ExposedPorts" not in moved
    assert moved["Entrypoint"] == [
        "/var/rapid/aws-lambda-rie", "--log-level", "error",
        "--runtime-interface-emulator-address", "127.0.0.1:6935", "--runtime-api-address", "127.0.0.1:41234",
    ]  # fmt: skip
    assert moved["HostConfig"]["Binds"] == sam_lambda_container()["HostConfig"]["Binds"]
    assert moved["Env"] == sam_lambda_container()["Env"]


def test_other_containers_are_left_as_they_are():
    """Breakage tried: every container moved to the host network (SAM's build containers, anyone's)."""
    other = sam_lambda_container()
    other["Labels"] = {"sam.cli.container.type": "build"}
    assert host_network(other) == other


class FakeEngine:
    """A Docker API socket that records every request it receives and answers each with 200 and a fixed body."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received = b""
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):  # until the client is done (the relay passes its EOF on)
                    self.received += data
                body = b'{"Id":"abc"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[HostNetworkRelay, FakeEngine]]:
    engine = FakeEngine(tmp_path / "engine.sock")
    relay = HostNetworkRelay(tmp_path / "docker.sock", engine.path).start()
    yield relay, engine
    relay.stop()
    engine.server.close()


def send(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while data := client.recv(65536):
            answer += data
        return answer


def test_the_relay_rewrites_the_create_request_and_passes_the_answer(relay):
    """Breakage tried: the original Content-Length kept next to the new one (two lengths for the rewritten, longer
    body: a server that takes the first reads a truncated JSON)."""
    proxy, engine = relay
    body = json.dumps(sam_lambda_container()).encode()
    head = b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
    answer = send(proxy.listen, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.endswith(b'{"Id":"abc"}')
    sent_head, _, sent_body = engine.received.partition(b"\r\n\r\n")
    assert json.loads(sent_body)["HostConfig"]["NetworkMode"] == "host"
    assert [line for line in sent_head.split(b"\r\n") if line.lower().startswith(b"content-length:")] == [
        b"Content-Length: %d" % len(sent_body)
    ]
    assert proxy.created[0]["HostConfig"]["NetworkMode"] == "host"


def test_the_relay_passes_other_requests_byte_for_byte(relay):
    """Breakage tried: a chunked upload (SAM's image build context) re-framed or cut at its first chunk."""
    proxy, engine = relay
    request = (
        b"POST /v1.41/build?t=samcli HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n3\r\nEND\r\n0\r\n\r\n"
    )
    answer = send(proxy.listen, request)
    assert engine.received == request
    assert answer.startswith(b"HTTP/1.1 200 OK")
