"""A real registry (Debian's docker-registry) on 127.0.0.1 per test module, and Debian's skopeo to fill it with
images built here (upgradectl/local/registry.py). Under CI a missing tool fails the tests (tests/support/tools.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import count

import pytest

from tests.support.registry_proxy import ProxyRules, RegistryProxy
from tests.support.tools import require_tool
from upgradectl.local.registry import LocalRegistry, Platform, Skopeo, write_oci_image


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    require_tool("docker-registry")
    started = LocalRegistry(tmp_path_factory.mktemp("registry")).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(require_tool("skopeo"), tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="module")
def push(registry: LocalRegistry, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """push(repository, tag, content, platforms=1) -> the digest written; the image built here, pushed with skopeo."""
    layouts = count()

    def pushed(repository: str, tag: str, content: bytes, platforms: int = 1) -> str:
        layout = tmp_path_factory.mktemp(f"layout{next(layouts)}")
        archs = ("amd64", "arm64", "s390x")[:platforms]
        digest = write_oci_image(layout, tag, content, tuple(Platform(architecture=arch) for arch in archs))
        skopeo.push(layout, registry.host, repository, tag)
        return digest

    return pushed


@pytest.fixture
def proxy(registry: LocalRegistry) -> Iterator[Callable[[ProxyRules], RegistryProxy]]:
    started: list[RegistryProxy] = []

    def start(rules: ProxyRules) -> RegistryProxy:
        started.append(RegistryProxy(registry.host, rules).start())
        return started[-1]

    yield start
    for one in started:
        one.stop()
