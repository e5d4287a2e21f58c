"""The local stack's image registry (issue 22): a real docker-registry on 127.0.0.1 holding the demo fleet's
images, so the images' pre-flight runs locally as in production (`IMAGE_PREFLIGHT=auto`).

Started with the simulated cluster and with `--cluster real` unless `--no-registry` (never with `--kubeconfig`): a
docker-registry of its own, apart from the real cluster's chart registry (realcluster/registry.py). The sample
chart's older and newer tags of every component (what the demo customers run, and so their rollback images) and
the versions the README and the docs deploy on the local stack (`DOCS_VERSIONS`), each built here from scratch and pushed with skopeo
(upgradectl/local/registry.py). The demo releases name `<registry>/<component>` in `<component>.image.repository`,
so a deploy of a tag that was never pushed is refused (422 ImagesRefused) before anything starts, and a deploy of
a pushed one is pinned to its digest (`v1.2.0@sha256:…`).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from upgrader.infra.components import REGISTRY

from upgradectl.local.cluster_modes import StartupError
from upgradectl.local.realcluster.processes import StartError
from upgradectl.local.registry import LocalRegistry, Skopeo, push_sample_images, write_oci_image

# The versions the README and docs/ deploy on the local stack (README's first rollout: api v1.2.0; the how-to
# pages' canary, compatibility, rings and analysis examples; --cluster real's never-Ready `v1.2.0-broken`), pushed for every component beside its sample tags.
DOCS_VERSIONS = ("v1.2.0", "v1.2.0-broken", "v1.3.0", "v2.0.0", "v9.9.10", "v9.9.9-bad")
REQUIRED_BINARIES = ("docker-registry", "skopeo")


@dataclass
class DemoImages:
    """The started registry: its host (`127.0.0.1:<port>`) and what was pushed ((repository, tag) -> digest)."""

    registry: LocalRegistry
    pushed: dict[tuple[str, str], str] = field(default_factory=dict)
    preflight: str = "auto"  # the stack's IMAGE_PREFLIGHT while this registry runs

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def url(self) -> str:
        return f"http://{self.registry.host}"

    def repository_values(self) -> dict[str, str]:
        """Each component's `<component>.image.repository` value naming this registry (the release's user values)."""
        return {f"{spec.name}.image.repository": spec.sample_image_repository(self.host) for spec in REGISTRY}

    def banner(self) -> str:
        tags = sorted({tag for _, tag in self.pushed})
        return (f"registry {self.url} (docker-registry, {len(self.pushed)} images pushed with skopeo: tags "
                f"{', '.join(tags)}); releases name {self.host}/<component>; IMAGE_PREFLIGHT={self.preflight} (an unknown "
                "tag is refused 422 ImagesRefused, a known one pinned to its digest)")  # fmt: skip


def banner_line(images: DemoImages | None, args: argparse.Namespace) -> str:
    """The banner's `Images` line: the registry, or why there is none (the pre-flight is then off)."""
    if images is not None:
        return images.banner()
    missing = missing_binaries()
    if args.no_registry:
        why = "--no-registry"
    elif missing:
        why = f"{' and '.join(missing)} not found on PATH: apt-get install -y {' '.join(missing)}"
    else:
        why = "--kubeconfig: it runs with the simulated cluster and --cluster real only"
    return f"no local registry ({why}): IMAGE_PREFLIGHT=off"


def missing_binaries() -> list[str]:
    return [name for name in REQUIRED_BINARIES if shutil.which(name) is None]


def start_demo_images(stack: contextlib.ExitStack) -> DemoImages | None:
    """Start the registry in a fresh folder (removed on exit) and push the demo images. None when `docker-registry`
    or `skopeo` is not installed: the stack then starts without them, the pre-flight off, and its banner says
    which binary is missing and how to install it (a demo that needs no registry still runs). StartupError
    naming the step that failed."""
    if missing_binaries():
        return None
    work = Path(tempfile.mkdtemp(prefix="upgrade-local-registry-"))
    stack.callback(shutil.rmtree, work, ignore_errors=True)
    registry = LocalRegistry(work / "registry")
    try:
        registry.start(what="start the local image registry")
        stack.callback(registry.stop)
        images = DemoImages(registry)
        images.pushed.update(
            push_demo_images(registry.host, Skopeo(str(shutil.which("skopeo")), work / "skopeo"), work)
        )
    except StartError as exc:
        raise StartupError(f"{exc} (log: {registry.log}; --no-registry starts without it)") from exc
    return images


def push_demo_images(host: str, skopeo: Skopeo, work: Path) -> dict[tuple[str, str], str]:
    """The sample tags (multi-arch, push_sample_images) and DOCS_VERSIONS of every component (one image each,
    pushed a few at a time). Returns (repository, tag) -> digest."""
    pushed = push_sample_images(host, skopeo, work)

    def push(spec_name: str, tag: str) -> tuple[tuple[str, str], str]:
        layout = work / "layouts" / spec_name / tag
        digest = write_oci_image(layout, tag, f"{spec_name} {tag}".encode())
        skopeo.push(layout, host, spec_name, tag)  # --preserve-digests: the registry serves these bytes
        return (f"{host}/{spec_name}", tag), digest

    jobs = [(spec.name, tag) for spec in REGISTRY for tag in DOCS_VERSIONS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        pushed.update(pool.map(lambda job: push(*job), jobs))
    return pushed
