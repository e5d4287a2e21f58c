"""The sample blue-green chart follows the documented contract, proved with the real helm (v3.17.2):
`helm lint`, and `helm template` with the values each step of `upgrader.cluster.bluegreen` sets."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from upgrader.cluster.bluegreen import BlueGreenError, plan_finalize, plan_rollback, plan_upgrade, slots_of

from tests.support.helm_binary import helm_binary

CHART = Path(__file__).resolve().parents[2] / "charts" / "customer-stack-bluegreen"
RELEASE = "customer-abc123"


def helm(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=60,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, check=False)  # fmt: skip


@pytest.fixture
def render(tmp_path: Path):
    def run(*sets: str) -> dict[tuple[str, str], dict[str, Any]]:
        args = ["template", RELEASE, str(CHART)]
        for value in sets:
            args += ["--set", value]
        done = helm(*args, home=tmp_path)
        assert done.returncode == 0, done.stderr
        docs = [d for d in yaml.safe_load_all(done.stdout) if d]
        return {(d["kind"], d["metadata"]["name"]): d for d in docs}

    return run


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def selected_slot(objects: dict[tuple[str, str], dict[str, Any]], component: str) -> str:
    return objects[("Service", f"{RELEASE}-{component}")]["spec"]["selector"]["upgrades.example.com/slot"]


def images(objects: dict[tuple[str, str], dict[str, Any]], component: str) -> dict[str, str]:
    return {
        name.rsplit("-", 1)[1]: doc["spec"]["template"]["spec"]["containers"][0]["image"]
        for (kind, name), doc in objects.items()
        if kind == "Deployment" and name.startswith(f"{RELEASE}-{component}-")
    }


def apply(values: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """What `--reuse-values --set` leaves in the release's values (dotted keys, string values)."""
    for item in sets:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = values
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return values


def test_the_chart_passes_helm_lint(tmp_path):
    done = helm("lint", str(CHART), "--strict", home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_service_per_component_follows_the_active_slot(render):
    objects = render()
    assert {selected_slot(objects, c) for c in ("api", "dashboard", "exporter", "mosquitto")} == {"blue"}
    assert images(objects, "api") == {"blue": "registry.example.com/api:v1.1.0"}  # green has no tag: not deployed
    deployment = objects[("Deployment", f"{RELEASE}-api-blue")]
    assert deployment["spec"]["selector"]["matchLabels"]["upgrades.example.com/slot"] == "blue"


def test_an_upgrade_deploys_the_idle_slot_then_switches_and_a_rollback_switches_back(render):
    values = chart_values()
    plan = plan_upgrade(values, "api", "v2.0.0")
    assert (plan.active, plan.idle, plan.deploy) == ("blue", "green", ["api.slots.green.tag=v2.0.0"])
    # step 1: the new version runs on the idle slot; traffic still goes to blue
    deployed = render(*plan.deploy)
    assert images(deployed, "api") == {"blue": "registry.example.com/api:v1.1.0",
                                       "green": "registry.example.com/api:v2.0.0"}  # fmt: skip
    assert selected_slot(deployed, "api") == "blue"
    # each deployed slot has a preview Service, so the idle slot can be probed before any traffic moves
    preview = deployed[("Service", f"{RELEASE}-api-green")]
    assert preview["spec"]["selector"]["upgrades.example.com/slot"] == "green"
    assert ("Service", f"{RELEASE}-api-green") not in render()  # green not deployed: no preview Service
    # step 2 (after the green Deployment is healthy): one value switches the Service
    switched = render(*plan.deploy, *plan.switch)
    assert selected_slot(switched, "api") == "green"
    assert set(images(switched, "api")) == {"blue", "green"}  # the old slot stays for a rollback
    values = apply(values, plan.deploy + plan.switch)
    assert slots_of(values, "api").version == "v2.0.0"
    # rollback: switch back at once, nothing redeployed
    back = plan_rollback(values, "api")
    assert back == ["api.activeSlot=blue"] == plan.rollback
    assert selected_slot(render(*plan.deploy, *plan.switch, *back), "api") == "blue"
    # the next upgrade goes onto blue, the idle slot again
    assert plan_upgrade(values, "api", "v2.1.0").deploy == ["api.slots.blue.tag=v2.1.0"]


def test_finalize_removes_the_old_slot_and_then_nothing_is_left_to_switch_back_to(render):
    values = apply(chart_values(), ["api.slots.green.tag=v2.0.0", "api.activeSlot=green"])
    finalize = plan_finalize(values, "api")
    assert finalize == ["api.slots.blue.tag="]
    objects = render("api.slots.green.tag=v2.0.0", "api.activeSlot=green", *finalize)
    assert images(objects, "api") == {"green": "registry.example.com/api:v2.0.0"}
    with pytest.raises(BlueGreenError, match="no version to switch back to"):
        plan_rollback(apply(values, finalize), "api")


def test_a_slot_pinned_to_its_digest_runs_the_image_by_digest(render):
    # the value a blue-green slot step writes when the pre-flight resolved the digest (docs/images.md)
    pinned = "v2.0.0@sha256:" + "c" * 64
    objects = render(f"api.slots.green.tag={pinned}", "api.activeSlot=green")
    assert images(objects, "api") == {"blue": "registry.example.com/api:v1.1.0",
                                      "green": f"registry.example.com/api:{pinned}"}  # fmt: skip
    assert selected_slot(objects, "api") == "green"
    # and the release's slots read it back as its version: an upgrade to it puts nothing on the slot again
    values = apply(chart_values(), [f"api.slots.green.tag={pinned}"])
    assert plan_upgrade(values, "api", "v2.0.0").deploy == []


def test_the_chart_refuses_an_active_slot_without_a_version(tmp_path):
    done = helm("template", RELEASE, str(CHART), "--set", "api.activeSlot=green", home=tmp_path)
    assert done.returncode != 0
    assert "api.activeSlot is green, but api.slots.green.tag is empty" in done.stderr
    done = helm("template", RELEASE, str(CHART), "--set", "api.activeSlot=purple", home=tmp_path)
    assert done.returncode != 0 and "must be blue or green" in done.stderr


def test_values_that_do_not_follow_the_contract_are_named():
    with pytest.raises(BlueGreenError, match="not a blue-green chart"):
        slots_of({"api": {"image": {"tag": "v1"}}}, "api")
    with pytest.raises(BlueGreenError, match="already runs v1.1.0"):
        plan_upgrade(chart_values(), "api", "v1.1.0")
