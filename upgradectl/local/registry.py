"""A real image registry on 127.0.0.1 (Debian's docker-registry, distribution 2.8), filled with small images
built here from scratch and pushed with Debian's skopeo: no pull from outside, no daemon. The real cluster's
chart registry (upgradectl/local/realcluster/registry.py) is one of these too, serving TLS for helm 4.

The tests of the registry adapters start one per test module (tests/images/); the local stack starts one so
that the demo customers' releases name images that exist (upgradectl/local/demo_images.py). Plain HTTP,
loopback only (the adapter speaks plain HTTP to loopback registries only: upgrader.images.distribution).

`write_oci_image` writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) holding one image,
or a multi-arch index of one image per platform, whose layer is a tiny tarball; `push` copies it with
`skopeo copy --all --preserve-digests`, so the registry holds exactly the bytes written here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import ssl
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upgrader.images.registry import OCI_INDEX, OCI_MANIFEST
from upgrader.infra.components import REGISTRY

from upgradectl.local.realcluster.processes import Process, StartError, free_port, on_free_ports, wait_until

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
# An access log line of docker-registry 2.8 (gorilla's combined format): `... "HEAD /v2/x/manifests/t HTTP/1.1" 200 ...`
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v2/\S*) HTTP/[0-9.]+" (?P<status>\d{3})')
INSECURE_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    status: int


class LocalRegistry:
    """docker-registry serving plain HTTP on 127.0.0.1:<free port>, its storage and logs under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.tls = False
        self.process: Process | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "registry.log"

    def start(
        self, port: int | None = None, *, tls: tuple[Path, Path] | None = None, ca_file: Path | None = None,
        what: str = "start the image registry",
    ) -> LocalRegistry:  # fmt: skip
        """Serve on 127.0.0.1 (a free port unless given); `tls` = (certificate, key) serves HTTPS instead,
        checked ready with `ca_file`. The chart registry of the real cluster starts the same way."""
        binary = shutil.which("docker-registry")
        if not binary:
            raise StartError(f"{what}: no docker-registry binary; apt-get install docker-registry "
                             "(scripts/realk8s/build-control-plane.sh installs it)")  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        if port:
            self._serve(binary, port, tls, ca_file, what)
        else:  # a port chosen free, chosen again if something took it before the registry bound it
            on_free_ports(lambda: self._serve(binary, free_port(), tls, ca_file, what))
        return self

    def _serve(self, binary: str, port: int, tls: tuple[Path, Path] | None, ca_file: Path | None, what: str) -> None:
        self.port = port
        self.tls = tls is not None
        config = self.directory / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.directory / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else ""),
            encoding="utf-8",
        )
        self.process = Process("docker-registry", [binary, "serve", str(config)], self.log)
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        url = f"{'https' if tls else 'http'}://{self.host}/v2/"
        wait_until(what, lambda: urllib.request.urlopen(url, timeout=2, context=context).status == 200, 30,  # noqa: S310
                   self.process)  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def requests(self) -> list[Request]:
        """Every /v2/ request the registry logged so far (its access log), in order."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return [Request(m["method"], m["path"], int(m["status"])) for m in _ACCESS.finditer(text)]


@dataclass(frozen=True, slots=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"


class Skopeo:
    """Debian's skopeo, with a policy that accepts the images built here and TLS off (loopback only)."""

    def __init__(self, binary: str, work: Path) -> None:
        self.binary = binary
        work.mkdir(parents=True, exist_ok=True)
        self.policy = work / "policy.json"
        self.policy.write_text(json.dumps(INSECURE_POLICY), encoding="utf-8")

    def push(self, layout: Path, registry: str, repository: str, tag: str) -> None:
        """Copy the layout's image (every platform of an index) to `registry/repository:tag`, bytes unchanged."""
        self._run("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                  f"docker://{registry}/{repository}:{tag}")  # fmt: skip

    def digest(self, registry: str, repository: str, tag: str) -> str:
        """The digest skopeo reports for the tag (`skopeo inspect --format {{.Digest}}`)."""
        return self._run(
            "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{registry}/{repository}:{tag}"
        ).strip()

    def raw_manifest(self, registry: str, repository: str, tag: str) -> bytes:
        """The manifest (or index) as the registry serves it (`skopeo inspect --raw`)."""
        return self._run("inspect", "--raw", "--tls-verify=false", f"docker://{registry}/{repository}:{tag}").encode()

    def delete(self, registry: str, repository: str, tag: str) -> None:
        self._run("delete", "--tls-verify=false", f"docker://{registry}/{repository}:{tag}")

    def _run(self, *args: str) -> str:
        argv = [self.binary, "--policy", str(self.policy), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise StartError(f"skopeo {args[0]} failed: {result.stderr.strip()[-400:]}")
        return result.stdout


def push_sample_images(registry: str, skopeo: Skopeo, work: Path) -> dict[tuple[str, str], str]:
    """Every component's sample versions (the sample chart's older and newer tags, upgrader.infra.components)
    pushed to `registry` at the sample chart's repository path, each a multi-arch index (amd64, arm64) as
    real images are. Returns (repository, tag) -> digest; the demo releases then name these repositories."""
    pushed = {}
    for spec in REGISTRY:
        repository = spec.sample_image_repository(registry).split("/", 1)[1]
        for tag in (spec.sample.older_tag, spec.sample.newer_tag):
            layout = work / "layouts" / spec.name / tag
            write_oci_image(layout, tag, f"{spec.name} {tag}".encode(), (Platform(), Platform(architecture="arm64")))
            skopeo.push(layout, registry, repository, tag)
            pushed[(spec.sample_image_repository(registry), tag)] = skopeo.digest(registry, repository, tag)
    return pushed


def write_oci_image(layout: Path, tag: str, content: bytes, platforms: tuple[Platform, ...] = (Platform(),)) -> str:
    """An OCI image layout at `layout` holding `tag`: one image whose layer holds `content` (as /hello.txt),
    or with several platforms a multi-arch index of one image each. Returns the tag's digest (the index's
    for several platforms). Deterministic: the same arguments give the same digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}), encoding="utf-8")
    manifests = []
    for platform in platforms:
        layer_tar = _tarball({"hello.txt": content + f"\n{platform.os}/{platform.architecture}\n".encode()})
        layer = _blob(layout, gzip.compress(layer_tar, mtime=0))
        config = _blob(layout, _json({
            "architecture": platform.architecture, "os": platform.os, "config": {},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
        }))  # fmt: skip
        manifest = _blob(layout, _json({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **config}, "layers": [{"mediaType": OCI_LAYER, **layer}],
        }))  # fmt: skip
        manifests.append(
            {
                "mediaType": OCI_MANIFEST,
                **manifest,
                "platform": {"architecture": platform.architecture, "os": platform.os},
            }
        )
    if len(manifests) == 1:
        top = {key: value for key, value in manifests[0].items() if key != "platform"}
    else:
        top = {
            "mediaType": OCI_INDEX,
            **_blob(layout, _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})),
        }
    index_path = layout / "index.json"
    earlier: list[dict[str, Any]] = json.loads(index_path.read_text())["manifests"] if index_path.exists() else []
    kept = [m for m in earlier if (m.get("annotations") or {}).get(REF_NAME) != tag]
    index = {"schemaVersion": 2, "manifests": [*kept, {**top, "annotations": {REF_NAME: tag}}]}
    index_path.write_text(json.dumps(index), encoding="utf-8")
    return str(top["digest"])


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
