"""The local stack's image registry (issue 22, docs/images.md "Locally"): started as the README starts the stack
(no flag), a real docker-registry on 127.0.0.1 holds the demo images, the demo releases name it and the images'
pre-flight is on. A deploy of a tag that was never pushed is refused 422 ImagesRefused with nothing written; the
README's first rollout (api v1.2.0) is accepted and every helm Job sets the digest-pinned tag value."""

from __future__ import annotations

import re
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from upgrader.cluster.job_spec import LABEL_CUSTOMER_ID

from tests.local.conftest import StackProcess, port_is_free, stack_env
from tests.support.database import temporary_database
from upgradectl.local.demo_images import DOCS_VERSIONS
from upgradectl.local.realcluster.processes import StartError
from upgradectl.local.registry import Skopeo

pytestmark = pytest.mark.e2e

IDS = [f"cust_abc{n}" for n in range(123, 127)]


@pytest.fixture(scope="module")
def images_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """The README's stack (no --no-registry), 4 demo customers, quick helm Jobs."""
    with temporary_database(prefix="upgrades_local_images") as url:
        stack = StackProcess(["--customers", "4", "--job-seconds", "0.2", "--poll-seconds", "0"],
                             stack_env(DATABASE_URL=url), tmp_path_factory.mktemp("images-stack"), registry=True)  # fmt: skip
        yield stack
        assert stack.stop(signal.SIGINT) == 0, stack.output
        assert port_is_free(stack.port)
        # the registry stopped with the stack
        assert not _answers(f"http://{_registry_host(stack)}/v2/")


def _registry_host(stack: StackProcess) -> str:
    found = re.search(r"registry http://(127\.0\.0\.1:\d+) \(docker-registry", stack.stdout_path.read_text())
    assert found, stack.output
    return found.group(1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
            return int(response.status) == 200
    except OSError:
        return False


def _helm_values(stack: StackProcess, customer_id: str) -> list[str]:
    """The --set-string values of the customer's helm upgrade Jobs (upgrade-system), read from the simulated
    cluster over HTTP."""
    import kubernetes

    found = re.search(r"kmock API server at (http://127\.0\.0\.1:\d+)", stack.stdout_path.read_text())
    assert found
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=found.group(1))) as api_client:
        jobs: list[Any] = (
            kubernetes.client.BatchV1Api(api_client)
            .list_namespaced_job("upgrade-system", label_selector=f"{LABEL_CUSTOMER_ID}={customer_id}")
            .items
        )
    values = []
    for job in jobs:
        if "helm-upgrade-" in job.metadata.name:
            container = job.spec.template.spec.containers[0]
            argv = list(container.command or []) + list(container.args or [])
            values += [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set-string"]
    return values


def test_the_banner_names_the_registry_and_it_holds_the_docs_versions(images_stack, tmp_path: Path):
    banner = images_stack.stdout_path.read_text()
    assert "IMAGE_PREFLIGHT=auto" in banner, banner
    host = _registry_host(images_stack)
    skopeo = Skopeo("skopeo", tmp_path)
    for tag in ("v1.0.3", "v1.1.0", *DOCS_VERSIONS):  # the sample chart's tags and what the docs deploy
        assert skopeo.digest(host, "api", tag).startswith("sha256:")
    with pytest.raises(StartError, match="manifest unknown"):
        skopeo.digest(host, "api", "v1.2.1")


def test_a_tag_never_pushed_is_refused_with_nothing_written(images_stack):
    before = images_stack.get("/api/upgrades?component=api")["upgrades"]
    code, answer = images_stack.request("POST", "/api/upgrades/deploy",
                                        {"component": "api", "version": "v1.2.1", "strategy": "all"})  # fmt: skip
    assert code == 422, answer
    assert answer["error"] == "ImagesRefused", answer
    problems = answer["problems"]
    assert {p["customerId"] for p in problems} == set(IDS)
    assert {(p["role"], p["image"]) for p in problems} == {("target", f"{_registry_host(images_stack)}/api:v1.2.1")}
    assert images_stack.get("/api/upgrades?component=api")["upgrades"] == before
    assert all(images_stack.get(f"/api/customers/{cid}")["versions"]["api"] in ("v1.1.0", "v1.0.3") for cid in IDS)


def test_the_readmes_rollout_is_pinned_to_the_pushed_digest(images_stack, tmp_path: Path):
    digest = Skopeo("skopeo", tmp_path).digest(_registry_host(images_stack), "api", "v1.2.0")
    code, started = images_stack.request("POST", "/api/upgrades/deploy",
                                         {"component": "api", "version": "v1.2.0", "strategy": "all"})  # fmt: skip
    assert code == 202, started
    final: dict[str, Any] = images_stack.wait_status(started["upgradeId"], {"completed", "failed", "halted"}, 120)
    assert (final["status"], final["completed"]) == ("completed", len(IDS)), final
    assert _helm_values(images_stack, "cust_abc123") == [f"api.image.tag=v1.2.0@{digest}"]
    assert images_stack.get("/api/customers/cust_abc123")["versions"]["api"] == "v1.2.0"


def test_without_skopeo_the_stack_starts_without_a_registry_and_names_the_missing_binary(monkeypatch):
    import argparse
    import contextlib

    from upgradectl.local import demo_images

    monkeypatch.setattr(demo_images.shutil, "which", lambda name: None if name == "skopeo" else f"/usr/bin/{name}")
    with contextlib.ExitStack() as stack:
        assert demo_images.start_demo_images(stack) is None
    line = demo_images.banner_line(None, argparse.Namespace(no_registry=False))
    assert line == "no local registry (skopeo not found on PATH: apt-get install -y skopeo): IMAGE_PREFLIGHT=off"
