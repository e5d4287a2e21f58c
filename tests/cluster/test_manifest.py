"""The Job manifest and its name: pure functions, asserted field by field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from upgrader.cluster.job_reading import bound_output
from upgrader.cluster.job_spec import customer_label, helm_job_name
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import ClusterConfig, ClusterPermanentError, HelmJobSpec
from upgrader.infra import names

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def spec(**overrides: Any) -> HelmJobSpec:
    values: dict[str, Any] = dict(
        upgrade_id=12,
        log_id=345,
        customer_id="cust_0001",
        component="api",
        namespace="customer-0001",
        release="stack",
        operation="upgrade",
        version="v2.3.1",
        attempt=1,
        chart_version="1.4.0",
    )
    values.update(overrides)
    return HelmJobSpec(**values)


@pytest.fixture
def gateway() -> KubernetesClusterGateway:
    # The manifest is pure: no request is made, so the client points nowhere.
    config = ClusterConfig(
        mode="url", api_url="http://127.0.0.1:9", helm_timeout_seconds=300, ttl_seconds_after_finished=900
    )
    return KubernetesClusterGateway(api_client=None, config=config)  # type: ignore[arg-type]


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_upgrade_argv_is_exact(gateway: KubernetesClusterGateway) -> None:
    c = container(gateway.build_job_manifest(spec()))
    assert c["command"] + c["args"] == [
        "helm",
        "upgrade",
        "stack",
        "oci://registry.example.com/charts/customer-stack",
        "--namespace",
        "customer-0001",
        "--version",
        "1.4.0",
        "--reset-then-reuse-values",
        "--set-string",
        "api.image.tag=v2.3.1",
        "--wait",
        "--atomic",
        "--timeout",
        "300s",
        "--history-max",
        "10",
    ]
    assert c["command"] == ["helm"]
    assert all(isinstance(arg, str) for arg in c["args"])


def test_component_picks_its_tag_key(gateway: KubernetesClusterGateway) -> None:
    c = container(gateway.build_job_manifest(spec(component="mosquitto", version="2.0.18")))
    assert "mosquitto.image.tag=2.0.18" in c["args"]


def test_rollback_argv_always_names_the_revision(gateway: KubernetesClusterGateway) -> None:
    to_three = container(gateway.build_job_manifest(spec(operation="rollback", version=None, revision=3)))
    assert to_three["command"] + to_three["args"] == [
        "helm", "rollback", "stack", "3", "--namespace", "customer-0001", "--wait", "--timeout", "300s",
        "--history-max", "10",
    ]  # fmt: skip
    # Without a revision helm would go to "current minus one", whatever changed the release last.
    with pytest.raises(ClusterPermanentError, match="explicit revision"):
        gateway.build_job_manifest(spec(operation="rollback", version=None))


def test_restore_sets_only_the_component_back_on_the_pinned_chart(gateway: KubernetesClusterGateway) -> None:
    c = container(gateway.build_job_manifest(spec(operation="restore", version="v2.3.0", chart_version="1.5.0")))
    assert c["command"] + c["args"] == [
        "helm", "upgrade", "stack", "oci://registry.example.com/charts/customer-stack", "--namespace",
        "customer-0001", "--version", "1.5.0", "--reset-then-reuse-values", "--set-string", "api.image.tag=v2.3.0", "--wait",
        "--atomic", "--timeout", "300s", "--history-max", "10",
    ]  # fmt: skip


DIGEST = "sha256:" + "b" * 64


def _set_string(c: dict[str, Any]) -> str:
    return str(c["args"][c["args"].index("--set-string") + 1])


def test_an_upgrade_and_a_blue_green_slot_step_pin_the_tag_to_the_digest(gateway: KubernetesClusterGateway) -> None:
    upgrade = container(gateway.build_job_manifest(spec(digest=DIGEST)))
    slot = container(gateway.build_job_manifest(spec(operation="slot", slot="green", digest=DIGEST)))
    assert _set_string(upgrade) == f"api.image.tag=v2.3.1@{DIGEST}"
    assert _set_string(slot) == f"api.slots.green.tag=v2.3.1@{DIGEST}"
    # without a resolved digest (pre-flight off), the tag alone
    assert _set_string(container(gateway.build_job_manifest(spec(operation="slot", slot="green")))) == (
        "api.slots.green.tag=v2.3.1"
    )
    # a finalize still empties the old slot
    finalize = spec(operation="finalize", slot="blue", version=None)
    assert _set_string(container(gateway.build_job_manifest(finalize))) == "api.slots.blue.tag="


@pytest.mark.parametrize(
    "bad",
    [
        spec(operation="slot", slot="green", digest="sha256:nothex"),
        spec(operation="slot", slot="green", digest=f"{DIGEST} --set x=y"),
        spec(operation="switch", slot="green", version=None, digest=DIGEST),
        spec(operation="finalize", slot="blue", version=None, digest=DIGEST),
    ],
    ids=["not-a-digest", "argument-injection", "on-a-switch", "on-a-finalize"],
)
def test_a_digest_is_refused_where_no_tag_takes_it(gateway: KubernetesClusterGateway, bad: HelmJobSpec) -> None:
    with pytest.raises(ClusterPermanentError, match="invalid digest"):
        gateway.build_job_manifest(bad)


def test_a_train_pins_each_component_that_has_a_digest(gateway: KubernetesClusterGateway) -> None:
    api, dashboard = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    train = spec(digest=api, also=(("dashboard", "v2.0.0", dashboard), ("exporter", "v1.1.0", None)))
    args = container(gateway.build_job_manifest(train))["args"]
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "--set-string"] == [
        f"api.image.tag=v2.3.1@{api}",
        f"dashboard.image.tag=v2.0.0@{dashboard}",
        "exporter.image.tag=v1.1.0",
    ]
    # a train's digest is validated as the component's own is: it goes into a --set-string value
    with pytest.raises(ClusterPermanentError, match="invalid digest 'sha256:x,y=z' of 'dashboard'"):
        gateway.build_job_manifest(spec(also=(("dashboard", "v2.0.0", "sha256:x,y=z"),)))


@pytest.mark.parametrize("chart_version", [None, "", "../1.0", "1.0 --set x=y", "-1.0.0"])
def test_an_upgrade_without_a_valid_pinned_chart_version_is_refused(
    gateway: KubernetesClusterGateway, chart_version: str | None
) -> None:
    with pytest.raises(ClusterPermanentError, match="chart version"):
        gateway.build_job_manifest(spec(chart_version=chart_version))


def test_recover_rolls_back_to_the_given_revision(gateway: KubernetesClusterGateway) -> None:
    c = container(gateway.build_job_manifest(spec(operation="recover", version=None, revision=7)))
    assert c["command"] + c["args"] == [
        "helm",
        "rollback",
        "stack",
        "7",
        "--namespace",
        "customer-0001",
        "--wait",
        "--timeout",
        "300s",
        "--history-max",
        "10",
    ]


def test_job_metadata_labels_and_annotations(gateway: KubernetesClusterGateway) -> None:
    manifest = gateway.build_job_manifest(spec(customer_id="Cust 42/x"))
    meta = manifest["metadata"]
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    assert meta["namespace"] == "upgrade-system"
    assert meta["name"] == helm_job_name(spec(customer_id="Cust 42/x"))
    labels = meta["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "customer-upgrades"
    assert labels["upgrades.example.com/upgrade-id"] == "12"
    assert labels["upgrades.example.com/log-id"] == "345"
    assert labels["upgrades.example.com/component"] == "api"
    assert labels["upgrades.example.com/operation"] == "upgrade"
    assert labels["upgrades.example.com/attempt"] == "1"
    assert labels["upgrades.example.com/release"] == "stack"
    assert labels["upgrades.example.com/target-namespace"] == "customer-0001"
    assert labels["upgrades.example.com/customer-id"].startswith("cust-42-x-")
    assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())
    assert meta["annotations"]["upgrades.example.com/customer-id"] == "Cust 42/x"
    assert meta["annotations"]["upgrades.example.com/version"] == "v2.3.1"
    assert manifest["spec"]["template"]["metadata"]["labels"] == labels


def test_job_spec_never_retries_and_is_bounded(gateway: KubernetesClusterGateway) -> None:
    job = gateway.build_job_manifest(spec())["spec"]
    assert job["backoffLimit"] == 0
    # helm's --timeout, as much again for its --atomic rollback, and a margin
    assert job["activeDeadlineSeconds"] == 2 * 300 + 300
    assert job["ttlSecondsAfterFinished"] == 900
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "upgrade-runner"


def test_pod_is_locked_down(gateway: KubernetesClusterGateway) -> None:
    pod = gateway.build_job_manifest(spec())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container({"spec": {"template": {"spec": pod}}})["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    c = pod["containers"][0]
    assert c["image"] == names.HELM_IMAGE
    assert set(c["resources"]["requests"]) >= {"cpu", "memory"}
    assert set(c["resources"]["limits"]) >= {"cpu", "memory"}


def test_helm_gets_writable_home_on_an_empty_dir(gateway: KubernetesClusterGateway) -> None:
    pod = gateway.build_job_manifest(spec())["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e["value"] for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        assert env[var].startswith(mounts["helm-home"] + "/")
    assert "helm-home" in empty_dirs and "tmp" in empty_dirs


@pytest.mark.parametrize(
    "overrides",
    [
        {"version": "1.0;rm -rf /"},
        {"version": "a,b=c"},  # --set-string would read a second key
        {"version": None},
        {"release": "Stack_Bad"},
        {"namespace": "-bad-"},
        {"component": "unknown"},
        {"operation": "rollback", "version": None, "revision": 0},
    ],
)
def test_invalid_spec_is_a_permanent_error(gateway: KubernetesClusterGateway, overrides: dict) -> None:
    with pytest.raises(ClusterPermanentError):
        gateway.build_job_manifest(spec(**overrides))


def test_job_name_is_deterministic_valid_and_tracks_attempt_and_operation() -> None:
    name = helm_job_name(spec())
    assert name == helm_job_name(spec())
    assert re.fullmatch(r"helm-upgrade-345-cust-0001-[0-9a-f]{8}-a1", name)
    assert helm_job_name(spec(attempt=2)) != name
    assert helm_job_name(spec(operation="rollback")) != name
    # An automatic rollback (the upgrade's row) and a requested one (its own row) never share a name.
    assert helm_job_name(spec(log_id=346, operation="rollback")) != helm_job_name(spec(operation="rollback"))
    # Same (log row, customer, operation, attempt) -> same name, whatever the upgrade id or version.
    assert helm_job_name(spec(upgrade_id=13, version="v9")) == name


def test_job_name_of_a_huge_customer_id_stays_a_dns_label() -> None:
    name = helm_job_name(
        spec(customer_id="Ä" * 10 + "X" * 200, log_id=9_223_372_036_854_775_807, operation="rollback", attempt=99)
    )
    assert len(name) <= 63 and DNS_LABEL.match(name)
    assert name.endswith("-a99")


def test_customer_ids_with_the_same_slug_get_different_names() -> None:
    ids = ["cust_1", "cust-1", "CUST_1", "cust.1", "cust 1", "cust__1"]
    names = {helm_job_name(spec(customer_id=cid)) for cid in ids}
    labels = {customer_label(cid) for cid in ids}
    assert len(names) == len(ids)
    assert len(labels) == len(ids)
    assert all(DNS_LABEL.match(n) and len(n) <= 63 for n in names)


def test_bound_output_keeps_the_tail_with_a_note() -> None:
    text = "".join(f"line {i:05d}\n" for i in range(5000))
    bounded = bound_output(text, 1024)
    assert len(bounded.encode()) <= 1024
    assert bounded.startswith("[truncated ")
    note = re.match(r"\[truncated (\d+) bytes\]\n", bounded)
    assert note is not None
    dropped = int(note.group(1))
    kept = bounded.split("\n", 1)[1]
    assert text.endswith(kept)
    assert dropped + len(kept.encode()) == len(text.encode())
    assert kept.startswith("line ")  # cut at a line boundary
    assert bound_output("short", 1024) == "short"


def test_bound_output_never_splits_a_utf8_character() -> None:
    bounded = bound_output("é" * 5000, 300)
    assert len(bounded.encode()) <= 300
    assert bounded.split("\n", 1)[1] == "é" * len(bounded.split("\n", 1)[1])


def _set_strings(c: dict[str, Any]) -> list[str]:
    return [str(c["args"][i + 1]) for i, arg in enumerate(c["args"]) if arg == "--set-string"]


def test_a_chart_that_declares_the_digest_value_gets_the_tag_and_the_digest_apart(
    gateway: KubernetesClusterGateway,
) -> None:
    # an upgrade, a restore and a blue-green slot step of a component whose release declares `image.digest`
    upgrade = container(gateway.build_job_manifest(spec(digest=DIGEST, digest_values=("api",))))
    restore = container(gateway.build_job_manifest(spec(operation="restore", digest=DIGEST, digest_values=("api",))))
    slot = container(
        gateway.build_job_manifest(spec(operation="slot", slot="green", digest=DIGEST, digest_values=("api",)))
    )
    assert _set_strings(upgrade) == _set_strings(restore) == ["api.image.tag=v2.3.1", f"api.image.digest={DIGEST}"]
    assert _set_strings(slot) == ["api.slots.green.tag=v2.3.1", f"api.slots.green.digest={DIGEST}"]


def test_without_a_resolved_digest_the_declared_digest_value_is_emptied_not_reused(
    gateway: KubernetesClusterGateway,
) -> None:
    # Given the pre-flight resolved no digest (off, or the customer unchecked) for a chart that declares one
    c = container(gateway.build_job_manifest(spec(digest_values=("api",))))
    # Then helm reuses every value the release was given (an earlier deploy's digest too) ...
    assert "--reset-then-reuse-values" in c["args"]
    # ... so the digest value is set empty explicitly: the chart renders `repository:v2.3.1`, not the old image
    assert _set_strings(c) == ["api.image.tag=v2.3.1", "api.image.digest="]
    slot = container(gateway.build_job_manifest(spec(operation="slot", slot="blue", digest_values=("api",))))
    assert _set_strings(slot) == ["api.slots.blue.tag=v2.3.1", "api.slots.blue.digest="]


def test_a_train_sets_each_component_in_the_form_its_chart_declares(gateway: KubernetesClusterGateway) -> None:
    api, dashboard = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    train = spec(digest=api, also=(("dashboard", "v2.0.0", dashboard), ("exporter", "v1.1.0", None)),
                 digest_values=("dashboard", "exporter"))  # fmt: skip
    assert _set_strings(container(gateway.build_job_manifest(train))) == [
        f"api.image.tag=v2.3.1@{api}",
        "dashboard.image.tag=v2.0.0",
        f"dashboard.image.digest={dashboard}",
        "exporter.image.tag=v1.1.0",
        "exporter.image.digest=",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        spec(digest_values=("dashboard",)),
        spec(operation="switch", slot="green", version=None, digest_values=("api",)),
        spec(operation="finalize", slot="blue", version=None, digest_values=("api",)),
        spec(operation="rollback", version=None, revision=3, digest_values=("api",)),
    ],
    ids=["a-component-not-set", "on-a-switch", "on-a-finalize", "on-a-rollback"],
)
def test_digest_values_are_refused_where_no_image_is_set(gateway: KubernetesClusterGateway, bad: HelmJobSpec) -> None:
    with pytest.raises(ClusterPermanentError, match="digest values"):
        gateway.build_job_manifest(bad)


def test_a_digest_set_apart_is_validated_as_a_pinned_one_is(gateway: KubernetesClusterGateway) -> None:
    with pytest.raises(ClusterPermanentError, match="invalid digest"):
        gateway.build_job_manifest(spec(digest="sha256:x,y=z", digest_values=("api",)))
