"""k8s/admission: the ValidatingAdmissionPolicy that admits in upgrade-system only the product's helm Jobs
(serviceAccountName upgrade-runner, the configured helm image, command [helm]). Its CEL expressions are
evaluated here (cel-python) against the Jobs the product builds and against Jobs it must refuse, as the
API server evaluates them for a ValidatingAdmissionPolicyBinding with validationActions [Deny]."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.types import ClusterConfig, HelmJobSpec
from upgrader.infra import names

ADMISSION = Path(__file__).resolve().parents[2] / "k8s" / "admission"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(ADMISSION.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def policy() -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == "ValidatingAdmissionPolicy"]
    return found


def refusals(job: dict[str, Any]) -> list[str]:
    """The messages of the policy's validations that fail for this Job (empty: admitted)."""
    spec = policy()["spec"]
    environment = celpy.Environment()
    activation: dict[str, Any] = {"object": celpy.json_to_cel(job)}
    variables: dict[str, Any] = {}
    for variable in spec.get("variables") or []:
        program = environment.program(environment.compile(variable["expression"]))
        variables[variable["name"]] = program.evaluate({**activation, "variables": celpy.json_to_cel(variables)})
    activation["variables"] = celpy.json_to_cel({k: v for k, v in variables.items()})
    failed = []
    for validation in spec["validations"]:
        result = environment.program(environment.compile(validation["expression"])).evaluate(activation)
        if isinstance(result, celpy.CELEvalError) or not bool(result):
            failed.append(validation["message"])
    return failed


# The manifest is pure: no request is made, so the client points nowhere.
GATEWAY = KubernetesClusterGateway(api_client=None, config=ClusterConfig(mode="url", api_url="http://127.0.0.1:9"))  # type: ignore[arg-type]
SPECS = {
    "upgrade": dict(operation="upgrade", version="v2.3.1", chart_version="1.4.0"),
    "rollback": dict(operation="rollback", revision=3),
    "slot": dict(operation="slot", version="v2.3.1", chart_version="1.4.0", slot="green"),
}


def product_job(operation: str = "upgrade") -> dict[str, Any]:
    spec = HelmJobSpec(upgrade_id=12, log_id=345, customer_id="cust_0001", component="api",
                       namespace="customer-0001", release="stack", **SPECS[operation])  # type: ignore[arg-type]  # fmt: skip
    return GATEWAY.build_job_manifest(spec)


def test_the_policy_is_bound_to_the_job_namespace_and_denies() -> None:
    (binding,) = [d for d in documents() if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == policy()["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": names.JOB_NAMESPACE}
    }
    assert policy()["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy()["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], set(rule["operations"])) == (
        ["batch"],
        ["jobs"],
        {"CREATE", "UPDATE"},
    )


def test_the_policy_names_the_shared_names() -> None:
    """Breakage tried: the policy's image left at another tag than upgrader.infra.names.HELM_IMAGE: this fails
    (and the product's own Job is refused by the next test)."""
    text = "\n".join(v["expression"] for v in policy()["spec"]["validations"])
    assert f"'{names.HELM_IMAGE}'" in text and f"'{names.JOB_SERVICE_ACCOUNT}'" in text and "['helm']" in text


@pytest.mark.parametrize("operation", sorted(SPECS))
def test_every_job_the_product_builds_is_admitted(operation: str) -> None:
    assert refusals(product_job(operation)) == []


def mutate(path: str, value: Any) -> dict[str, Any]:
    job = copy.deepcopy(product_job())
    node: Any = job
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    node[keys[-1]] = value
    return job


POD = "spec.template.spec"
REFUSED = [
    ("another service account", mutate(f"{POD}.serviceAccountName", "default"), "serviceAccountName"),
    ("no service account named", mutate(f"{POD}.serviceAccountName", None), "serviceAccountName"),
    ("a tag instead of the digest", mutate(f"{POD}.containers.0.image", f"alpine/helm:{names.HELM_VERSION}"),
     "configured helm image"),
    ("another image", mutate(f"{POD}.containers.0.image", "busybox"), "configured helm image"),
    ("a shell", mutate(f"{POD}.containers.0.command", ["sh", "-c"]), "command [helm]"),
    ("the image's entrypoint", mutate(f"{POD}.containers.0.command", None), "command [helm]"),
    ("a second container", mutate(f"{POD}.containers", [*product_job()["spec"]["template"]["spec"]["containers"]] * 2),
     "exactly one container"),
    ("an init container", mutate(f"{POD}.initContainers", [{"name": "x", "image": "busybox"}]), "no init"),
    ("a host path", mutate(f"{POD}.volumes", [{"name": "h", "hostPath": {"path": "/"}}]), "emptyDir volumes only"),
    ("another Secret", mutate(f"{POD}.volumes", [{"name": "s", "secret": {"secretName": "x"}}]), "emptyDir"),
]  # fmt: skip


def _strip_none(job: dict[str, Any]) -> dict[str, Any]:
    """A field set to None is a field left out (as the API server stores it)."""
    if isinstance(job, dict):
        return {k: _strip_none(v) for k, v in job.items() if v is not None}  # type: ignore[return-value]
    if isinstance(job, list):
        return [_strip_none(v) for v in job]  # type: ignore[return-value]
    return job


@pytest.mark.parametrize(("case", "job", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_job_that_is_not_the_products_helm_job_is_refused(case: str, job: dict[str, Any], expected: str) -> None:
    """Breakage tried: each validation removed from the policy in turn (but the ephemeral containers one: a
    Job cannot carry them at creation, so it has no case here): its case here is admitted."""
    failed = refusals(_strip_none(job))
    assert failed and all(expected in message for message in failed), (case, failed)
