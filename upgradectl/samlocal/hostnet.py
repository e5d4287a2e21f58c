"""SAM's Lambda containers in the host's network namespace, reaching the local stack on 127.0.0.1.

`sam local invoke` creates its containers through the Docker API with the default (bridge) network and reaches the
runtime interface emulator through a published port; `--docker-network host` only skips connecting the container to
a network (samcli/local/docker/container.py), and podman's API service ignores containers.conf's `netns = "host"`
for the Docker API's "default" network (checked with podman 4.3). So a function could reach PostgreSQL and the
simulated cluster, both on 127.0.0.1, only through the bridge's gateway address.

This relay sits between SAM and podman's API socket and changes one request: the creation of a container SAM labels
as a Lambda container. It asks for the host network and, since a published port means nothing there, tells the
emulator to listen where SAM will call it (127.0.0.1 and SAM's chosen port, instead of 0.0.0.0:8080) and to serve
the Runtime API on a free loopback port (instead of 127.0.0.1:9001, which two containers would share). Every other
byte passes through unchanged, responses and attached streams included.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

RIE_PORT = "8080/tcp"  # samcli's RAPID_PORT_CONTAINER
LAMBDA_LABEL = ("sam.cli.container.type", "lambda")
_CREATE = re.compile(rb"^POST (/v[0-9.]+)?/containers/create(\?\S*)? HTTP/1\.[01]$")


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def host_network(config: dict[str, Any], free_port: Callable[[], int] = free_loopback_port) -> dict[str, Any]:
    """The container configuration of a SAM Lambda container, moved to the host network on loopback addresses.

    Anything else (SAM's build containers, other clients' containers) comes back unchanged.
    """
    labels = config.get("Labels") or {}
    if labels.get(LAMBDA_LABEL[0]) != LAMBDA_LABEL[1]:
        return config
    host_config = dict(config.get("HostConfig") or {})
    bindings = (host_config.pop("PortBindings", None) or {}).get(RIE_PORT) or []
    if not bindings or not bindings[0].get("HostPort"):
        raise ValueError(f"a SAM Lambda container without a published {RIE_PORT}: {config.get('HostConfig')!r}")
    port = int(bindings[0]["HostPort"])
    host_config["NetworkMode"] = "host"
    moved = {key: value for key, value in config.items() if key not in ("ExposedPorts", "HostConfig")}
    moved["HostConfig"] = host_config
    moved["Entrypoint"] = [
        *(config.get("Entrypoint") or []),
        "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
        "--runtime-api-address", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    return moved


class HostNetworkRelay:
    """A Docker API socket (`listen`) relaying to the engine's (`upstream`), Lambda containers moved to the host."""

    def __init__(self, listen: Path, upstream: Path) -> None:
        self.listen = listen
        self.upstream = upstream
        self.created: list[dict[str, Any]] = []  # the configurations sent upstream (what was asked for)
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HostNetworkRelay:
        self.listen.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.listen))
        os.chmod(self.listen, 0o600)
        server.listen(64)
        self._server = server
        self._thread = threading.Thread(target=self._accept, name="sam-host-network-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.listen.unlink(missing_ok=True)

    def _accept(self) -> None:
        while self._server is not None:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.upstream))
        except OSError:
            client.close()
            return
        threading.Thread(target=_answers, args=(upstream, client), daemon=True).start()
        try:
            self._requests(_Reader(client), upstream)
        except (OSError, ValueError):  # a client gone mid-request, or a request the engine would refuse anyway
            pass
        finally:
            _shutdown_write(upstream)

    def _requests(self, reader: _Reader, upstream: socket.socket) -> None:
        """Relay request after request; the creation of a Lambda container rewritten, the rest as it came."""
        while True:
            head = reader.until(b"\r\n\r\n")
            if head is None:
                return
            lines = head.split(b"\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:] if line)}
            if _CREATE.match(lines[0]) and b"content-length" in headers:
                body = reader.exactly(int(headers[b"content-length"]))
                config = host_network(json.loads(body))
                self.created.append(config)
                body = json.dumps(config).encode()
                kept = [line for line in lines[1:] if line and not line.lower().startswith(b"content-length:")]
                head = b"\r\n".join([lines[0], *kept, b"Content-Length: " + str(len(body)).encode(), b"", b""])
                upstream.sendall(head + body)
                continue
            upstream.sendall(head)
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                _relay_chunked(reader, upstream)
            elif b"content-length" in headers:
                reader.relay(int(headers[b"content-length"]), upstream)
            if b"upgrade" in headers.get(b"connection", b"").lower():  # an attach: a raw stream from here on
                reader.relay_rest(upstream)
                return


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if not self._fill():
                return None
        end = self.buffer.index(marker) + len(marker)
        found, self.buffer = self.buffer[:end], self.buffer[end:]
        return found

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise ConnectionError("the client closed mid-body")
        found, self.buffer = self.buffer[:count], self.buffer[count:]
        return found

    def relay(self, count: int, target: socket.socket) -> None:
        while count > 0:
            if not self.buffer and not self._fill():
                raise ConnectionError("the client closed mid-body")
            part, self.buffer = self.buffer[:count], self.buffer[count:]
            target.sendall(part)
            count -= len(part)

    def relay_rest(self, target: socket.socket) -> None:
        if self.buffer:
            target.sendall(self.buffer)
            self.buffer = b""
        _pipe(self.sock, target)


def _relay_chunked(reader: _Reader, upstream: socket.socket) -> None:
    while True:
        size_line = reader.until(b"\r\n")
        if size_line is None:
            raise ConnectionError("the client closed mid-body")
        upstream.sendall(size_line)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            trailer = reader.until(b"\r\n")  # an empty line (trailers are not used by Docker clients)
            upstream.sendall(trailer or b"\r\n")
            return
        reader.relay(size + 2, upstream)  # the chunk and its CRLF


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    _shutdown_write(target)


def _answers(upstream: socket.socket, client: socket.socket) -> None:
    """The engine's answers to the client, as they come; both sockets closed once the engine is done."""
    _pipe(upstream, client)
    client.close()
    upstream.close()


def _shutdown_write(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
