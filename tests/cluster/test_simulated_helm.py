"""The simulated helm against Helm 3.17's real behaviour, proven with the real helm binary where it can be.

Reads (``helm history``, ``helm get values``, ``helm status``) run the real helm against the simulated
API server. For writes, the real helm runs up to the moment it stores its new release Secret: client-go
sends it as protobuf, which the simulation records and refuses, and the test decodes what the real
helm would have stored and compares it with what the simulated helm stores for the same command.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.release import decode_release_data, parse_release

from tests.cluster.conftest import wait_until
from tests.support.helm_binary import RealHelm, secret_from_protobuf
from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.simcluster import ChartVersion, write_chart_dir
from upgradectl.local.simcluster.charts import component_defaults

CHART = "oci://registry.example.com/charts/customer-stack"
LOCKED = "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress"
ATOMIC = "Error: UPGRADE FAILED: release stack failed, and has been rolled back due to atomic being set: "
APPLY_ERROR = (
    'cannot patch "stack-api" with kind Deployment: admission webhook "validate.policy.example.com" '
    "denied the request: simulated failure"
)
TAGS_1_4 = {"api": "v1.0.3", "dashboard": "v1.8.2", "exporter": "v0.9.1", "mosquitto": "2.0.15"}
TAGS_1_5 = {"api": "v1.1.0", "dashboard": "v1.9.0", "exporter": "v1.0.0", "mosquitto": "2.0.18"}
_numbers = itertools.count(1)


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def ns() -> str:
    return f"customer-h{next(_numbers)}"


@pytest.fixture
def real_helm(cluster: SimulatedCluster, tmp_path: Path) -> RealHelm:
    return RealHelm(cluster.url, tmp_path / "helm-home")


@pytest.fixture
def chart_dirs(cluster: SimulatedCluster, tmp_path: Path) -> dict[str, Path]:
    """The simulated registry's charts as directories the real helm loads."""
    return {v: write_chart_dir(cluster.charts.get("customer-stack", v), tmp_path / v) for v in ("1.4.0", "1.5.0")}


@pytest.fixture
def core(cluster: SimulatedCluster) -> Iterator[kubernetes.client.CoreV1Api]:
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        yield kubernetes.client.CoreV1Api(api_client)


@pytest.fixture
def submit(cluster: SimulatedCluster) -> Iterator[Callable[..., str]]:
    """Create a Job whose container runs `argv`, like the product's helm Jobs; returns its name."""
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:
        batch = kubernetes.client.BatchV1Api(api_client)

        def create(argv: list[str], *, deadline: int | None = None, component: str = "api") -> str:
            name = f"helm-test-{next(_numbers)}"
            labels = {"upgrades.example.com/component": component}
            spec: dict[str, Any] = {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"restartPolicy": "Never", "serviceAccountName": "upgrade-runner", "containers": [
                        {"name": "helm", "image": "alpine/helm:3.17.2", "command": argv[:1], "args": argv[1:]}]},
                },
            }  # fmt: skip
            if deadline is not None:
                spec["activeDeadlineSeconds"] = deadline
            manifest = {"apiVersion": "batch/v1", "kind": "Job", "spec": spec,
                        "metadata": {"name": name, "namespace": "upgrade-system", "labels": labels}}  # fmt: skip
            batch.create_namespaced_job("upgrade-system", body=manifest)  # type: ignore[arg-type]
            return name

        yield create


@dataclass(frozen=True)
class Finished:
    phase: str  # "succeeded" | "failed"
    reason: str | None  # the Failed condition's reason
    log: str  # helm's output ("" once the pod is gone)

    @property
    def error_line(self) -> str:
        return next((line for line in self.log.splitlines() if line.startswith("Error:")), "")


def finished(cluster: SimulatedCluster, name: str, timeout: float = 10.0) -> Finished:
    def done() -> dict[str, Any] | None:
        job = cluster.jobs().get(name) or {}
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
                return dict(condition)
        return None

    condition = wait_until(done, timeout, what=f"Job {name} to finish")
    pods = cluster.pods(name)
    log = "".join(cluster.job_log("upgrade-system", pod) or "" for pod in pods)
    phase = "succeeded" if condition["type"] == "Complete" else "failed"
    return Finished(phase, condition.get("reason") if phase == "failed" else None, log)


def upgrade(ns: str, *flags: str, release: str = "stack") -> list[str]:
    return ["helm", "upgrade", release, CHART, "--namespace", ns, *flags]


def rollback(ns: str, *revision: str, release: str = "stack") -> list[str]:
    return ["helm", "rollback", release, *revision, "--namespace", ns, "--wait", "--timeout", "600s"]


def statuses(cluster: SimulatedCluster, ns: str, release: str = "stack") -> list[tuple[int, str]]:
    return [(revision, status) for revision, status, _ in cluster.release_history(ns, release)]


def record(cluster: SimulatedCluster, ns: str, revision: int | None = None) -> dict[str, Any]:
    found = cluster.release_record(ns, "stack", revision)
    assert found is not None
    return found


def pending_record(cluster: SimulatedCluster, ns: str, revision: int) -> dict[str, Any]:
    """The revision a held helm Job has just written (its pending-* record)."""
    return wait_until(lambda: cluster.release_record(ns, "stack", revision), what=f"revision {revision}")


def comparable(release: dict[str, Any]) -> dict[str, Any]:
    """A release record without the moment it was written."""
    copy = json.loads(json.dumps(release))
    copy["info"].pop("last_deployed")
    return copy


def real_write(cluster: SimulatedCluster, run: Any, before: int) -> dict[str, Any]:
    """The release Secret the real helm tried to create (it got past all of its own checks)."""
    assert run.returncode == 1 and "create: failed to create" in run.stderr, run.stderr
    writes = cluster.protobuf_writes[before:]
    assert [w.method for w in writes] == ["POST"], writes
    return secret_from_protobuf(writes[0].body)


def seed(cluster: SimulatedCluster, ns: str, **kwargs: Any) -> None:
    values = kwargs.pop("values", {"api.image.tag": "v1.0.9", "dashboard.image.tag": "d1"})
    cluster.add_release(ns, "stack", values=values, **kwargs)


# --- storage format ------------------------------------------------------------------------------------


def test_release_secret_is_helms_storage_format(
    cluster: SimulatedCluster, core: kubernetes.client.CoreV1Api, ns: str
) -> None:
    cluster.add_release(ns, "stack", values={"api.image.tag": "v1.1.7"}, chart_version="1.4.0")
    secret: Any = core.read_namespaced_secret("sh.helm.release.v1.stack.v1", ns)
    assert secret.type == "helm.sh/release.v1"
    assert {k: v for k, v in secret.metadata.labels.items() if k != "createdAt"} == {
        "owner": "helm", "name": "stack", "status": "deployed", "version": "1"
    }  # fmt: skip
    assert secret.metadata.labels["createdAt"].isdigit()
    helm_encoded = base64.b64decode(secret.data["release"])  # the API's own base64
    compressed = base64.b64decode(helm_encoded)  # Helm's base64
    assert compressed[:3] == b"\x1f\x8b\x08"  # gzip
    release = json.loads(gzip.decompress(compressed))
    assert (release["name"], release["namespace"], release["version"]) == ("stack", ns, 1)
    assert (release["info"]["status"], release["info"]["description"]) == ("deployed", "Install complete")
    assert release["config"] == {"api": {"image": {"tag": "v1.1.7"}}}  # nested, as Helm stores user values
    assert release["chart"]["metadata"] == {
        "name": "customer-stack", "version": "1.4.0", "appVersion": "1.4.0", "apiVersion": "v2",
        "type": "application", "description": "One customer's stack: api, dashboard, exporter and mosquitto",
    }  # fmt: skip
    assert release["chart"]["values"] == component_defaults(TAGS_1_4)
    assert [t["name"] for t in release["chart"]["templates"]] == [
        "templates/_helpers.tpl", "templates/deployment.yaml", "templates/service.yaml"
    ]  # fmt: skip
    assert 'image: "registry.example.com/api:v1.1.7"' in release["manifest"]
    assert 'image: "registry.example.com/dashboard:v1.8.2"' in release["manifest"]


def test_an_updated_revision_is_relabelled_like_helms_update(
    cluster: SimulatedCluster, core: kubernetes.client.CoreV1Api, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    assert finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=v2"))).phase == (
        "succeeded"
    )
    secret: Any = core.read_namespaced_secret("sh.helm.release.v1.stack.v1", ns)
    labels = secret.metadata.labels
    assert labels["status"] == "superseded" and labels["modifiedAt"].isdigit() and "createdAt" not in labels


def test_real_helm_reads_the_history(
    cluster: SimulatedCluster, real_helm: RealHelm, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, chart_version="1.4.0")
    pinned = upgrade(ns, "--version", "1.5.0", "--reuse-values", "--set-string", "api.image.tag=v2", "--atomic")
    assert finished(cluster, submit(pinned)).phase == "succeeded"
    cluster.outcome = lambda manifest: "fail"
    assert finished(cluster, submit(pinned)).phase == "failed"

    history = real_helm.json("history", "stack", namespace=ns)

    assert [{k: v for k, v in entry.items() if k != "updated"} for entry in history] == [
        {"revision": 1, "status": "superseded", "chart": "customer-stack-1.4.0", "app_version": "1.4.0",
         "description": "Install complete"},
        {"revision": 2, "status": "superseded", "chart": "customer-stack-1.5.0", "app_version": "1.5.0",
         "description": "Upgrade complete"},
        {"revision": 3, "status": "failed", "chart": "customer-stack-1.5.0", "app_version": "1.5.0",
         "description": f'Upgrade "stack" failed: {APPLY_ERROR}'},
        {"revision": 4, "status": "deployed", "chart": "customer-stack-1.5.0", "app_version": "1.5.0",
         "description": "Rollback to 2"},
    ]  # fmt: skip


def test_real_helm_reads_the_values_all_values_and_older_revisions(
    cluster: SimulatedCluster, real_helm: RealHelm, submit: Callable[..., str], ns: str
) -> None:
    cluster.add_release(ns, "stack", values={"api": {"image": {"tag": "v1.1.7"}}}, chart_version="1.5.0")
    change = upgrade(ns, "--reuse-values", "--set-string", "dashboard.image.tag=v2.0.0", "--set", "api.replicaCount=3")
    assert finished(cluster, submit(change)).phase == "succeeded"

    assert real_helm.json("get", "values", "stack", namespace=ns) == {
        "api": {"image": {"tag": "v1.1.7"}, "replicaCount": 3}, "dashboard": {"image": {"tag": "v2.0.0"}}
    }  # fmt: skip
    assert real_helm.json("get", "values", "stack", "--revision", "1", namespace=ns) == {
        "api": {"image": {"tag": "v1.1.7"}}
    }  # fmt: skip
    everything = component_defaults(TAGS_1_5)
    everything["api"]["image"]["tag"], everything["api"]["replicaCount"] = "v1.1.7", 3
    everything["dashboard"]["image"]["tag"] = "v2.0.0"
    assert real_helm.json("get", "values", "stack", "--all", namespace=ns) == everything
    first = component_defaults(TAGS_1_5)
    first["api"]["image"]["tag"] = "v1.1.7"
    assert real_helm.json("get", "values", "stack", "--all", "--revision", "1", namespace=ns) == first


def test_real_helm_reads_the_status(cluster: SimulatedCluster, real_helm: RealHelm, ns: str) -> None:
    cluster.add_release(ns, "stack", values={"api.image.tag": "v1.1.7"}, revision=3)
    cluster.set_release_status(ns, "stack", "pending-upgrade")

    status = real_helm.json("status", "stack", namespace=ns)

    assert (status["name"], status["namespace"], status["version"]) == ("stack", ns, 4)
    assert (status["info"]["status"], status["info"]["description"]) == ("pending-upgrade", "Preparing upgrade")
    assert status["config"] == {"api": {"image": {"tag": "v1.1.7"}}}
    assert real_helm.json("status", "stack", "--revision", "2", namespace=ns)["info"]["status"] == "superseded"


def test_the_product_decoder_reads_the_simulated_release(
    cluster: SimulatedCluster, core: kubernetes.client.CoreV1Api, ns: str
) -> None:
    cluster.add_release(ns, "stack", values={"api.image.tag": "v1.1.7"}, chart_version="1.4.0", revision=2)
    secrets: Any = core.list_namespaced_secret(ns, label_selector="owner=helm,name=stack")
    by_revision = {int(s.metadata.labels["version"]): s for s in secrets.items}
    newest = by_revision[2]

    release = parse_release(decode_release_data(newest.data["release"]), status_label=newest.metadata.labels["status"])

    assert (release.name, release.namespace, release.revision, release.status) == ("stack", ns, 2, "deployed")
    assert (release.chart_name, release.chart_version, release.app_version) == ("customer-stack", "1.4.0", "1.4.0")
    assert release.value("api.image.tag") == ("v1.1.7", "values")
    assert release.value("dashboard.image.tag") == ("v1.8.2", "chart-defaults")  # 1.4.0's default
    assert release.version_of("mosquitto.image.tag") == "2.0.15"
    older = parse_release(decode_release_data(by_revision[1].data["release"]))
    assert (older.revision, older.status) == (1, "superseded")


# --- the chart registry ----------------------------------------------------------------------------------


def test_upgrade_pulls_the_pinned_chart_version_and_records_it(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, chart_version="1.5.0")
    assert finished(cluster, submit(upgrade(ns, "--version", "1.4.0", "--reuse-values"))).phase == "succeeded"
    assert record(cluster, ns)["chart"]["metadata"]["version"] == "1.4.0"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "deployed")]


def test_upgrade_without_version_pulls_the_newest_chart(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, chart_version="1.4.0")
    cluster.add_chart(ChartVersion("customer-stack", "1.10.0", "1.10.0", component_defaults(TAGS_1_5)))
    assert finished(cluster, submit(upgrade(ns, "--reuse-values"))).phase == "succeeded"
    assert record(cluster, ns)["chart"]["metadata"]["version"] == "1.10.0"  # semver order, not text order


def test_unknown_chart_version_fails_like_helm_and_leaves_the_release_alone(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    result = finished(cluster, submit(upgrade(ns, "--version", "9.9.9", "--reuse-values")))
    assert (result.phase, result.reason) == ("failed", "BackoffLimitExceeded")
    assert result.error_line == "Error: registry.example.com/charts/customer-stack:9.9.9: not found"
    assert statuses(cluster, ns) == [(1, "deployed")]


def test_unknown_chart_fails_like_helm(cluster: SimulatedCluster, submit: Callable[..., str], ns: str) -> None:
    seed(cluster, ns)
    argv = ["helm", "upgrade", "stack", "oci://registry.example.com/charts/nope", "--namespace", ns]
    assert finished(cluster, submit(argv)).error_line == (
        'Error: GET "https://registry.example.com/v2/charts/nope/tags/list": response status code 404: '
        "name unknown: repository name not known to registry"
    )
    assert statuses(cluster, ns) == [(1, "deployed")]


def test_the_chart_catalog_is_configurable(ns: str) -> None:
    only = ChartVersion("customer-stack", "2.0.0", "2.0.0", component_defaults(TAGS_1_5))
    with SimulatedCluster(charts=[only]) as cluster:
        cluster.add_release(ns, "stack")
        assert record(cluster, ns)["chart"]["metadata"]["version"] == "2.0.0"
        with pytest.raises(KeyError):
            cluster.add_release(ns, "other", chart_version="1.5.0")


# --- values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--reuse-values", "--set-string", "api.image.tag=v2.0.0", "--wait", "--atomic", "--timeout", "600s"],
        ["--reset-values", "--set-string", "api.image.tag=v2.0.0"],
        ["--set-string", "api.image.tag=v2.0.0"],  # neither flag, new values: only those
        [],  # neither flag, no new value: the previous values as they are
        ["--reset-then-reuse-values", "--set-string", "api.image.tag=v2.0.0"],
        ["--reuse-values", "--set", "dashboard.image.tag=null", "--set", "exporter.replicaCount=3,mosquitto.x=true"],
        ["--set-string", "api.image.tag=v2.0.0", "--set", "api.image.tag=v9"],  # --set-string is applied last
    ],
    ids=["reuse", "reset", "neither", "nothing-new", "reset-then-reuse", "null-and-typed", "set-order"],
)
def test_an_upgrade_writes_what_the_real_helm_writes(
    cluster: SimulatedCluster, real_helm: RealHelm, chart_dirs: dict[str, Path], submit: Callable[..., str],
    ns: str, flags: list[str],
) -> None:  # fmt: skip
    # Given a release installed from chart 1.4.0 with user values
    seed(cluster, ns, chart_version="1.4.0")
    # When the real helm upgrades it to chart 1.5.0 (it stops at writing the new revision) ...
    before = len(cluster.protobuf_writes)
    run = real_helm.run("upgrade", "stack", str(chart_dirs["1.5.0"]), *flags, "--disable-openapi-validation",
                        namespace=ns)  # fmt: skip
    real = real_write(cluster, run, before)
    # ... and the simulated helm does the same (held after writing its pending revision)
    cluster.hold()
    submit(upgrade(ns, "--version", "1.5.0", *flags))
    simulated = pending_record(cluster, ns, 2)
    # Then both wrote the same release: revision, status, chart (metadata, templates, values), values, manifest
    assert comparable(simulated) == comparable(real["release"])
    assert real["name"] == "sh.helm.release.v1.stack.v2" and real["type"] == "helm.sh/release.v1"
    assert {k: v for k, v in real["labels"].items() if k != "createdAt"} == {
        "name": "stack", "owner": "helm", "status": "pending-upgrade", "version": "2"
    }  # fmt: skip
    cluster.release()


DIGEST = "sha256:" + "7" * 64


@pytest.mark.parametrize(
    ("values", "flags", "image"),
    [
        ({}, ["--set-string", "api.image.tag=v2.0.0", "--set-string", f"api.image.digest={DIGEST}"], f"@{DIGEST}"),
        ({"api.image.digest": DIGEST}, ["--set-string", "api.image.tag=v2.0.0", "--set-string", "api.image.digest="],
         ":v2.0.0"),
        ({"api.image.digest": DIGEST}, ["--set-string", "api.image.tag=v2.0.0"], f"@{DIGEST}"),
    ],
    ids=["digest-set", "digest-emptied", "digest-reused"],
)  # fmt: skip
def test_a_chart_declaring_the_digest_value_renders_what_the_real_helm_renders(
    cluster: SimulatedCluster, real_helm: RealHelm, submit: Callable[..., str], tmp_path: Path, ns: str,
    values: dict[str, str], flags: list[str], image: str,
) -> None:  # fmt: skip
    # Given a release of a chart whose defaults declare `<component>.image.digest: ""` (docs/images.md, form 2)
    cluster.add_chart(ChartVersion("customer-stack", "1.6.0", "1.6.0", component_defaults(TAGS_1_5, digest_value=True)))
    chart = write_chart_dir(cluster.charts.get("customer-stack", "1.6.0"), tmp_path / "digest")
    seed(cluster, ns, chart_version="1.6.0", values={"api.image.tag": "v1.1.0", **values})
    common = ["--reset-then-reuse-values", *flags]
    # When the real helm and the simulated one run the same upgrade
    before = len(cluster.protobuf_writes)
    run = real_helm.run("upgrade", "stack", str(chart), *common, "--disable-openapi-validation", namespace=ns)
    real = real_write(cluster, run, before)
    cluster.hold()
    submit(upgrade(ns, "--version", "1.6.0", *common))
    simulated = pending_record(cluster, ns, 2)
    # Then both wrote the same release and manifest: the image by its digest when the value is set, else by its tag
    # (and helm's reuse keeps an earlier digest unless the command empties it)
    assert comparable(simulated) == comparable(real["release"])
    assert f'image: "registry.example.com/api{image}"' in real["release"]["manifest"]
    cluster.release()


@pytest.mark.parametrize(
    "flags",
    [
        ["--set-string", "api.slots.green.tag=v2.0.0"],  # a slot step: the new version onto the idle slot
        ["--set-string", "api.activeSlot=green"],  # the switch (green was deployed before)
        ["--set-string", "api.slots.blue.tag="],  # finalize: the old slot's Deployment and preview Service go
    ],
    ids=["slot", "switch", "finalize"],
)
def test_a_blue_green_step_writes_what_the_real_helm_writes(
    cluster: SimulatedCluster, real_helm: RealHelm, submit: Callable[..., str], tmp_path: Path, ns: str,
    flags: list[str],
) -> None:  # fmt: skip
    # Given a release of the blue-green sample chart whose api has v1.9.0 on green, blue active
    chart = write_chart_dir(cluster.charts.get("customer-stack-bluegreen", "2.0.0"), tmp_path / "bluegreen")
    seed(cluster, ns, chart_name="customer-stack-bluegreen",
         values={"api.slots.green.tag": "v1.9.0"} if "api.slots.green.tag=v2.0.0" not in flags else {})  # fmt: skip
    if "api.slots.blue.tag=" in flags:  # finalize: green serves, blue is the old slot
        seed(cluster, ns, chart_name="customer-stack-bluegreen",
             values={"api.slots.green.tag": "v1.9.0", "api.activeSlot": "green"})  # fmt: skip
    common = ["--reset-then-reuse-values", *flags, "--wait", "--atomic", "--timeout", "600s"]
    # When the real helm and the simulated one run the same step
    before = len(cluster.protobuf_writes)
    run = real_helm.run("upgrade", "stack", str(chart), *common, "--disable-openapi-validation", namespace=ns)
    real = real_write(cluster, run, before)
    cluster.hold()
    submit(["helm", "upgrade", "stack", "oci://registry.example.com/charts/customer-stack-bluegreen",
            "--namespace", ns, "--version", "2.0.0", *common])  # fmt: skip
    simulated = pending_record(cluster, ns, 2)
    # Then both wrote the same release, manifest included (slots' Deployments, Services, preview Services)
    assert comparable(simulated) == comparable(real["release"])
    cluster.release()


def test_reuse_values_merges_the_new_values_into_the_previous_ones(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, values={"api": {"image": {"tag": "v1", "pullPolicy": "Always"}}, "dashboard.image.tag": "d1"})
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=v2")))
    assert record(cluster, ns)["config"] == {
        "api": {"image": {"tag": "v2", "pullPolicy": "Always"}}, "dashboard": {"image": {"tag": "d1"}}
    }  # fmt: skip


def test_without_reuse_values_only_the_new_values_remain(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    finished(cluster, submit(upgrade(ns, "--set-string", "api.image.tag=v2")))
    finished(cluster, submit(upgrade(ns, "--reset-values", "--set-string", "exporter.image.tag=e3")))
    finished(cluster, submit(upgrade(ns)))  # no value at all: the previous ones are kept
    configs = [config for _, _, config in cluster.release_history(ns, "stack")]
    assert configs[1:] == [
        {"api": {"image": {"tag": "v2"}}}, {"exporter": {"image": {"tag": "e3"}}}, {"exporter": {"image": {"tag": "e3"}}}
    ]  # fmt: skip


def test_reuse_values_reuses_the_deployed_revision_not_a_failed_newer_one(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    cluster.unhealthy_customers.add(ns)
    failing = upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=bad", "--wait")
    assert finished(cluster, submit(failing)).phase == "failed"  # revision 2 failed, revision 1 still deployed
    cluster.unhealthy_customers.clear()
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "dashboard.image.tag=d2")))
    assert record(cluster, ns)["config"] == {"api": {"image": {"tag": "v1.0.9"}}, "dashboard": {"image": {"tag": "d2"}}}
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "failed"), (3, "deployed")]


def test_an_upgrade_of_a_release_that_only_ever_failed_starts_from_that_revision(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, status="failed")
    assert finished(cluster, submit(upgrade(ns, "--reuse-values"))).phase == "succeeded"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "deployed")]


def test_set_builds_typed_values_and_set_string_keeps_text(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, values={})
    flags = ["--set", "api.replicaCount=3,api.debug=true,api.ratio=0.5,api.zip=01", "--set-string", "api.label=3"]
    finished(cluster, submit(upgrade(ns, *flags)))
    assert record(cluster, ns)["config"] == {
        "api": {"replicaCount": 3, "debug": True, "ratio": "0.5", "zip": "01", "label": "3"}
    }  # fmt: skip


def test_set_null_deletes_a_key(cluster: SimulatedCluster, submit: Callable[..., str], ns: str) -> None:
    seed(cluster, ns)
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--set", "dashboard.image.tag=null")))
    assert record(cluster, ns)["config"] == {"api": {"image": {"tag": "v1.0.9"}}, "dashboard": {"image": {}}}


def test_release_history_keeps_nested_values_and_flattens_on_request(cluster: SimulatedCluster, ns: str) -> None:
    from upgradectl.local.cluster import flatten_values

    seed(cluster, ns)
    ((_, _, values),) = cluster.release_history(ns, "stack")
    assert values == {"api": {"image": {"tag": "v1.0.9"}}, "dashboard": {"image": {"tag": "d1"}}}
    assert flatten_values(values) == {"api.image.tag": "v1.0.9", "dashboard.image.tag": "d1"}


@pytest.mark.parametrize(
    ("seeded", "flags", "left"),
    [
        ({"revision": 10}, [], [(2, "superseded")] + [(n, "superseded") for n in range(3, 11)] + [(11, "deployed")]),
        ({"revision": 5}, ["--history-max", "3"], [(4, "superseded"), (5, "superseded"), (6, "deployed")]),
        ({"revision": 5, "status": "failed"}, ["--history-max", "2"], [(4, "superseded"), (6, "deployed")]),
        ({"revision": 12}, ["--history-max", "0"], [(n, "superseded") for n in range(1, 13)] + [(13, "deployed")]),
    ],
    ids=["default-10", "max-3", "keeps-the-deployed-one", "no-limit"],
)
def test_history_is_pruned_like_helms_history_max(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str, seeded: dict[str, Any], flags: list[str],
    left: list[tuple[int, str]],
) -> None:  # fmt: skip
    seed(cluster, ns, **seeded)
    assert finished(cluster, submit(upgrade(ns, "--reuse-values", *flags))).phase == "succeeded"
    assert statuses(cluster, ns) == left


def test_an_upgrade_description_replaces_upgrade_complete(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--description", "api to a2 (upgrade 7)")))
    assert record(cluster, ns)["info"]["description"] == "api to a2 (upgrade 7)"


# --- Helm's lock -----------------------------------------------------------------------------------------


def test_a_running_upgrade_holds_helms_lock(cluster: SimulatedCluster, submit: Callable[..., str], ns: str) -> None:
    seed(cluster, ns)
    first = submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=v2"))
    cluster.hold(first)
    pending_record(cluster, ns, 2)  # written when helm's pod started
    assert statuses(cluster, ns) == [(1, "deployed"), (2, "pending-upgrade")]

    second = finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "dashboard.image.tag=v3")))

    assert (second.phase, second.error_line) == ("failed", LOCKED)
    assert statuses(cluster, ns) == [(1, "deployed"), (2, "pending-upgrade")]
    cluster.release(first)
    assert finished(cluster, first).phase == "succeeded"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "deployed")]


def test_an_upgrade_during_a_rollback_is_refused(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, revision=2)
    running = submit(rollback(ns))
    cluster.hold(running)
    assert pending_record(cluster, ns, 3)["info"]["status"] == "pending-rollback"
    assert finished(cluster, submit(upgrade(ns, "--reuse-values"))).error_line == LOCKED
    cluster.release(running)
    assert finished(cluster, running).phase == "succeeded"


@pytest.mark.parametrize("stuck", ["pending-upgrade", "pending-rollback", "pending-install"])
def test_real_helm_refuses_a_pending_release_with_the_same_words(
    cluster: SimulatedCluster, real_helm: RealHelm, chart_dirs: dict[str, Path], submit: Callable[..., str],
    ns: str, stuck: str,
) -> None:  # fmt: skip
    seed(cluster, ns)
    cluster.set_release_status(ns, "stack", stuck)
    real = real_helm.run("upgrade", "stack", str(chart_dirs["1.5.0"]), "--reuse-values", namespace=ns)
    simulated = finished(cluster, submit(upgrade(ns, "--reuse-values")))
    assert real.error_line == simulated.error_line == LOCKED
    assert statuses(cluster, ns) == [(1, "deployed"), (2, stuck)]


def test_rollback_does_not_take_the_lock_in_helm_3(
    cluster: SimulatedCluster, real_helm: RealHelm, submit: Callable[..., str], ns: str
) -> None:
    # Helm 3.17's rollback does not check for a pending revision: it is how a stuck release is recovered.
    seed(cluster, ns, revision=2)
    cluster.set_release_status(ns, "stack", "pending-upgrade")
    before = len(cluster.protobuf_writes)
    real = real_write(cluster, real_helm.run("rollback", "stack", "2", namespace=ns), before)
    assert real["release"]["info"]["status"] == "pending-rollback"

    assert finished(cluster, submit(rollback(ns, "2"))).phase == "succeeded"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "superseded"), (3, "pending-upgrade"), (4, "deployed")]


@pytest.mark.parametrize(("operation", "stuck"), [("upgrade", "pending-upgrade"), ("rollback", "pending-rollback")])
def test_helm_killed_mid_operation_leaves_the_release_pending(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str, operation: str, stuck: str
) -> None:
    seed(cluster, ns, revision=2)
    cluster.outcome = lambda manifest: "timeout"  # killed by its deadline while helm works
    argv = upgrade(ns, "--reuse-values") if operation == "upgrade" else rollback(ns)
    result = finished(cluster, submit(argv))
    assert (result.phase, result.reason, result.log) == ("failed", "DeadlineExceeded", "")  # the pod is gone
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "deployed"), (3, stuck)]


# --- rollback ------------------------------------------------------------------------------------------


def test_rollback_without_revision_goes_to_the_current_revision_minus_one(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    # Given api upgraded (revision 2), then dashboard (revision 3)
    seed(cluster, ns, values={"api.image.tag": "a1", "dashboard.image.tag": "d1"})
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=a2")))
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "dashboard.image.tag=d2")))
    # When "the api upgrade" is rolled back without a revision
    assert finished(cluster, submit(rollback(ns))).phase == "succeeded"
    # Then helm went to revision 2: the api stays new, the dashboard goes back
    newest = record(cluster, ns)
    assert (newest["version"], newest["info"]["description"]) == (4, "Rollback to 2")
    assert newest["config"] == {"api": {"image": {"tag": "a2"}}, "dashboard": {"image": {"tag": "d1"}}}
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "superseded"), (3, "superseded"), (4, "deployed")]


def test_rollback_to_a_revision_restores_its_values_and_chart(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, chart_version="1.4.0")
    finished(cluster, submit(upgrade(ns, "--version", "1.5.0", "--reuse-values", "--set-string", "api.image.tag=a2")))
    assert finished(cluster, submit(rollback(ns, "1"))).phase == "succeeded"
    first, newest = record(cluster, ns, 1), record(cluster, ns)
    assert newest["chart"] == first["chart"] and newest["chart"]["metadata"]["version"] == "1.4.0"
    assert newest["config"] == first["config"] and newest["manifest"] == first["manifest"]
    workload = cluster.workload(ns, "stack", "api")
    assert workload is not None
    assert workload["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/api:v1.0.9"


@pytest.mark.parametrize("revision", [[], ["1"]], ids=["previous", "explicit"])
def test_a_rollback_writes_what_the_real_helm_writes(
    cluster: SimulatedCluster, real_helm: RealHelm, submit: Callable[..., str], ns: str, revision: list[str]
) -> None:
    seed(cluster, ns, chart_version="1.4.0")
    finished(cluster, submit(upgrade(ns, "--version", "1.5.0", "--reuse-values", "--set-string", "api.image.tag=a2")))
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "dashboard.image.tag=d2")))
    before = len(cluster.protobuf_writes)
    real = real_write(cluster, real_helm.run("rollback", "stack", *revision, namespace=ns), before)
    cluster.hold()
    submit(rollback(ns, *revision))
    assert comparable(pending_record(cluster, ns, 4)) == comparable(real["release"])
    cluster.release()


def test_rollback_to_an_unknown_revision_fails_like_helm(
    cluster: SimulatedCluster, real_helm: RealHelm, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, revision=2)
    real = real_helm.run("rollback", "stack", "9", namespace=ns)
    simulated = finished(cluster, submit(rollback(ns, "9")))
    assert simulated.error_line == real.error_line == "Error: release has no 9 version"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "deployed")]


def test_a_missing_release_fails_like_helm(
    cluster: SimulatedCluster, real_helm: RealHelm, chart_dirs: dict[str, Path], submit: Callable[..., str], ns: str
) -> None:
    cluster.auto_create_releases = False
    cluster.onboard(ns)  # a customer namespace, onboarded, without the release
    real_rollback = real_helm.run("rollback", "stack", namespace=ns)
    real_upgrade = real_helm.run("upgrade", "stack", str(chart_dirs["1.5.0"]), namespace=ns)
    assert finished(cluster, submit(rollback(ns))).error_line == real_rollback.error_line == "Error: release: not found"
    assert (
        finished(cluster, submit(upgrade(ns))).error_line
        == real_upgrade.error_line
        == ('Error: UPGRADE FAILED: "stack" has no deployed releases')
    )


def test_upgrade_install_installs_a_missing_release_as_the_real_helm_does(
    cluster: SimulatedCluster, real_helm: RealHelm, chart_dirs: dict[str, Path], submit: Callable[..., str], ns: str
) -> None:
    cluster.auto_create_releases = False
    cluster.onboard(ns)  # a customer namespace, onboarded, without the release
    flags = ["--install", "--set-string", "api.image.tag=a1"]
    before = len(cluster.protobuf_writes)
    real = real_write(
        cluster,
        real_helm.run(
            "upgrade", "stack", str(chart_dirs["1.5.0"]), *flags, "--disable-openapi-validation", namespace=ns
        ),
        before,
    )
    cluster.hold()
    name = submit(upgrade(ns, "--version", "1.5.0", *flags))
    installing = comparable(pending_record(cluster, ns, 1))
    expected = comparable(real["release"])
    installing["info"].pop("first_deployed"), expected["info"].pop("first_deployed")
    assert installing == expected
    assert (expected["info"]["status"], expected["info"]["description"]) == (
        "pending-install", "Initial install underway"
    )  # fmt: skip
    cluster.release()
    result = finished(cluster, name)
    assert result.log.startswith('Release "stack" does not exist. Installing it now.\nNAME: stack\n')
    assert statuses(cluster, ns) == [(1, "deployed")]
    assert record(cluster, ns)["info"]["description"] == "Install complete"


def test_rollback_supersedes_deployed_revisions_and_leaves_failed_ones(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, status="failed", revision=3)  # a failed non-atomic upgrade: revision 2 still deployed
    assert finished(cluster, submit(rollback(ns, "2"))).phase == "succeeded"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "superseded"), (3, "failed"), (4, "deployed")]


def test_a_rollback_that_cannot_apply_fails_like_helm(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, revision=2)
    cluster.outcome = lambda manifest: "fail"
    result = finished(cluster, submit(rollback(ns)))
    assert result.error_line == f"Error: {APPLY_ERROR}"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "superseded"), (3, "failed")]
    assert record(cluster, ns)["info"]["description"] == f'Rollback "stack" failed: {APPLY_ERROR}'


# --- --wait and --atomic --------------------------------------------------------------------------------


def test_atomic_restores_the_previous_values_and_chart_when_pods_never_get_ready(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns, chart_version="1.4.0")
    cluster.unhealthy_customers.add(ns)
    argv = upgrade(ns, "--version", "1.5.0", "--reuse-values", "--set-string", "api.image.tag=a2", "--wait", "--atomic")
    result = finished(cluster, submit(argv))
    assert (result.phase, result.reason) == ("failed", "BackoffLimitExceeded")
    assert result.error_line == ATOMIC + "context deadline exceeded"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    failed, restored, first = record(cluster, ns, 2), record(cluster, ns, 3), record(cluster, ns, 1)
    assert failed["info"]["description"] == 'Upgrade "stack" failed: context deadline exceeded'
    assert failed["chart"]["metadata"]["version"] == "1.5.0"
    assert restored["info"]["description"] == "Rollback to 1"
    assert (restored["config"], restored["chart"]) == (first["config"], first["chart"])


def test_atomic_alone_implies_wait(cluster: SimulatedCluster, submit: Callable[..., str], ns: str) -> None:
    seed(cluster, ns)
    cluster.unhealthy_customers.add(ns)
    result = finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=a2", "--atomic")))
    assert result.error_line == ATOMIC + "context deadline exceeded"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "failed"), (3, "deployed")]


def test_wait_without_atomic_leaves_the_release_failed(
    cluster: SimulatedCluster, reader_gateway: KubernetesClusterGateway, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    cluster.unhealthy_customers.add(ns)
    result = finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=a2", "--wait")))
    assert result.error_line == "Error: UPGRADE FAILED: context deadline exceeded"
    assert statuses(cluster, ns) == [(1, "deployed"), (2, "failed")]  # the previous one stays deployed
    assert reader_gateway.rollout_status(ns, "stack", "api").phase == "failed"  # nothing rolled the pods back


def test_without_wait_helm_does_not_notice_pods_that_never_get_ready(
    cluster: SimulatedCluster, reader_gateway: KubernetesClusterGateway, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    cluster.unhealthy_customers.add(ns)
    result = finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=a2")))
    assert result.phase == "succeeded" and 'Release "stack" has been upgraded. Happy Helming!' in result.log
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "deployed")]
    assert reader_gateway.rollout_status(ns, "stack", "api").phase == "failed"


def test_a_rollback_whose_pods_never_get_ready_fails_its_wait(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    # revision 2 brought an image that never gets ready (deployed: no --wait); revision 3 a good one
    seed(cluster, ns)
    cluster.unhealthy_customers.add(ns)
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=bad")))
    cluster.unhealthy_customers.clear()
    good = upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=good", "--wait")
    assert finished(cluster, submit(good)).phase == "succeeded"
    result = finished(cluster, submit(rollback(ns, "2")))
    assert result.error_line == "Error: release stack failed: context deadline exceeded"
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "superseded"), (3, "deployed"), (4, "failed")]
    assert record(cluster, ns)["info"]["description"] == 'Release "stack" failed: context deadline exceeded'


def test_an_atomic_rollback_that_cannot_get_ready_either_fails_like_helm(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    cluster.unhealthy_customers.add(ns)  # every image this customer gets from now on never gets ready
    finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=bad")))
    result = finished(cluster, submit(upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=worse", "--atomic")))
    assert result.error_line == (
        "Error: UPGRADE FAILED: an error occurred while rolling back the release. original upgrade error: "
        "context deadline exceeded: release stack failed: context deadline exceeded"
    )
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "deployed"), (3, "failed"), (4, "failed")]


def test_the_wait_timeout_can_be_helms_own_times_the_time_scale(ns: str) -> None:
    # wait_timeout_seconds=None: --timeout 100s at time_scale 0.001 is 0.1 s (unscaled, the Job would run 100 s)
    with SimulatedCluster(job_duration_seconds=0.01, poll_interval=0.01, wait_timeout_seconds=None,
                          time_scale=0.001, unhealthy_customers={ns}) as cluster, \
            kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api_client:  # fmt: skip
        seed(cluster, ns)
        argv = upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=a2", "--wait", "--timeout", "100s")
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "waiting", "namespace": "upgrade-system"},
               "spec": {"template": {"spec": {"serviceAccountName": "upgrade-runner",
                                              "containers": [{"name": "helm", "command": argv[:1], "args": argv[1:]}]}}}}  # fmt: skip
        kubernetes.client.BatchV1Api(api_client).create_namespaced_job("upgrade-system", body=job)  # type: ignore[arg-type]
        assert finished(cluster, "waiting").error_line == "Error: UPGRADE FAILED: context deadline exceeded"


def test_a_failing_health_path_does_not_stop_helm(
    cluster: SimulatedCluster, reader_gateway: KubernetesClusterGateway, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    cluster.probe_unhealthy_customers.add(ns)
    argv = upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=a2", "--wait", "--atomic")
    assert finished(cluster, submit(argv)).phase == "succeeded"  # the pods got ready
    assert reader_gateway.rollout_status(ns, "stack", "api").phase == "ready"
    probe = reader_gateway.http_health(ns, "stack-api", "http", "/healthz")
    assert (probe.healthy, probe.status) == (False, 503)
    assert "the application's health check failed" in probe.detail
    assert reader_gateway.http_health(ns, "stack-dashboard", "http", "/healthz").healthy  # not changed by the upgrade
    assert finished(cluster, submit(rollback(ns))).phase == "succeeded"
    assert reader_gateway.http_health(ns, "stack-api", "http", "/healthz").healthy


# --- pods that wait, and the Job's deadline -------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "message"),
    [("ImagePullBackOff", 'Back-off pulling image "alpine/helm:3.17.2"'),
     ("ErrImagePull", 'rpc error: code = NotFound desc = failed to pull and unpack image "alpine/helm:3.17.2": '
                      "not found")],
)  # fmt: skip
def test_a_pod_can_sit_pending_on_its_image_before_helm_starts(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str, reason: str, message: str
) -> None:
    seed(cluster, ns)
    cluster.pending_when = lambda manifest: reason
    name = submit(upgrade(ns, "--reuse-values"))

    pod = wait_until(lambda: next(iter(cluster.pods(name).values()), None), what="the pod")
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": reason, "message": message}}
    assert cluster.jobs()[name]["status"]["active"] == 1 and cluster.jobs()[name]["status"]["ready"] == 0
    assert statuses(cluster, ns) == [(1, "deployed")]  # helm has not started: no lock taken

    cluster.pending_when = None
    assert finished(cluster, name).phase == "succeeded"


def test_pending_seconds_keep_every_pod_creating(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    cluster.pending_seconds = 600
    name = submit(upgrade(ns, "--reuse-values"))
    pod = wait_until(lambda: next(iter(cluster.pods(name).values()), None), what="the pod")
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert [c["status"] for c in pod["status"]["conditions"] if c["type"] == "Ready"] == ["False"]
    cluster.pending_seconds = 0
    assert finished(cluster, name).phase == "succeeded"


def test_an_unschedulable_pod_says_so(cluster: SimulatedCluster, submit: Callable[..., str], ns: str) -> None:
    seed(cluster, ns)
    cluster.pending_when = lambda manifest: "Unschedulable"
    name = submit(upgrade(ns, "--reuse-values"))
    pod = wait_until(lambda: next(iter(cluster.pods(name).values()), None), what="the pod")
    (scheduled,) = pod["status"]["conditions"]
    assert (scheduled["type"], scheduled["status"], scheduled["reason"]) == ("PodScheduled", "False", "Unschedulable")
    assert "containerStatuses" not in pod["status"]


def test_the_deadline_counts_from_the_job_start_while_the_pod_is_pending(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    cluster.time_scale = 0.0005
    cluster.pending_when = lambda manifest: "ImagePullBackOff"
    name = submit(upgrade(ns, "--reuse-values"), deadline=600)  # 0.3 s, scaled
    result = finished(cluster, name)
    assert (result.phase, result.reason) == ("failed", "DeadlineExceeded")
    assert cluster.pods(name) == {}  # the Job controller deleted its pod
    assert statuses(cluster, ns) == [(1, "deployed")]


def test_the_deadline_kills_helm_where_it_stands(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    seed(cluster, ns)
    cluster.time_scale = 0.0005
    cluster.hold()  # helm has written its pending revision and works on
    name = submit(upgrade(ns, "--reuse-values"), deadline=600)  # 0.3 s, scaled (10 minutes unscaled)
    result = finished(cluster, name)
    job = cluster.jobs()[name]
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == (
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )
    assert result.log == "" and cluster.pods(name) == {}
    assert statuses(cluster, ns) == [(1, "deployed"), (2, "pending-upgrade")]
    cluster.release()


def atomic_upgrade_within_a_deadline(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str, *, rollout_seconds: float, deadline: int
) -> Finished:
    """An upgrade whose new pods never get ready, with --timeout 10s and `deadline`, scaled by 0.1."""
    seed(cluster, ns)
    cluster.unhealthy_customers.add(ns)
    cluster.wait_timeout_seconds, cluster.time_scale, cluster.rollout_seconds = None, 0.1, rollout_seconds
    argv = upgrade(ns, "--reuse-values", "--set-string", "api.image.tag=a2", "--wait", "--atomic", "--timeout", "10s")
    return finished(cluster, submit(argv, deadline=deadline))


def test_a_deadline_shorter_than_wait_plus_rollback_strands_the_release_in_pending_rollback(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    # the wait gives up after 1 s, the deadline comes at 2 s: the --atomic rollback needs longer
    result = atomic_upgrade_within_a_deadline(cluster, submit, ns, rollout_seconds=600, deadline=20)
    assert (result.phase, result.reason) == ("failed", "DeadlineExceeded")
    assert statuses(cluster, ns) == [(1, "deployed"), (2, "failed"), (3, "pending-rollback")]


def test_a_deadline_that_leaves_room_for_the_atomic_rollback_lets_helm_finish(
    cluster: SimulatedCluster, submit: Callable[..., str], ns: str
) -> None:
    result = atomic_upgrade_within_a_deadline(cluster, submit, ns, rollout_seconds=0.2, deadline=60)
    assert (result.phase, result.reason, result.error_line) == (
        "failed", "BackoffLimitExceeded", ATOMIC + "context deadline exceeded"
    )  # fmt: skip
    assert statuses(cluster, ns) == [(1, "superseded"), (2, "failed"), (3, "deployed")]


def test_the_chart_renders_as_the_real_helm_renders_it(
    cluster: SimulatedCluster, chart_dirs: dict[str, Path], real_helm: RealHelm, ns: str
) -> None:
    seed(cluster, ns, chart_version="1.4.0", values={"api.image.tag": "v7", "mosquitto.service.port": 8883})
    flags = ["--set-string", "api.image.tag=v7", "--set", "mosquitto.service.port=8883"]
    rendered = real_helm.run("template", "stack", str(chart_dirs["1.4.0"]), *flags, namespace=ns)
    assert rendered.returncode == 0, rendered.stderr
    assert record(cluster, ns)["manifest"] == rendered.stdout


# --- the API server itself ----------------------------------------------------------------------------


def test_discovery_documents_are_those_of_a_real_api_server(cluster: SimulatedCluster) -> None:
    with urllib.request.urlopen(f"{cluster.url}/api/v1") as response:
        core_list = json.loads(response.read())
    assert core_list["groupVersion"] == "v1"  # kmock alone says "/v1"
    pods = next(r for r in core_list["resources"] if r["name"] == "pods")
    assert (pods["kind"], pods["singularName"], pods["namespaced"]) == ("Pod", "pod", True)
    assert "create" in pods["verbs"] and "list" in pods["verbs"]
    with urllib.request.urlopen(f"{cluster.url}/apis/apps/v1") as response:
        apps = json.loads(response.read())
    assert ("deployments", "Deployment", True) in {(r["name"], r["kind"], r["namespaced"]) for r in apps["resources"]}
