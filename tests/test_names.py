"""One source of truth for names shared by the code, template.yaml and k8s/: upgrader.infra.names.

Each test reads one consumer (template defaults, code defaults, RBAC manifests, docs) and fails when it
drifts from upgrader.infra.names.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from upgrader.cluster.types import ClusterConfig
from upgrader.infra import names
from upgrader.infra.settings import Settings, SettingsError

from tests.support.template import ROOT, function_environment, functions_by_folder, load_template, resources_of

RBAC = ROOT / "k8s" / "rbac"
# template parameter -> (environment variable it feeds, the name it must default to)
TEMPLATE_PARAMETERS = {
    "JobNamespace": ("JOB_NAMESPACE", names.JOB_NAMESPACE),
    "JobServiceAccount": ("JOB_SERVICE_ACCOUNT", names.JOB_SERVICE_ACCOUNT),
    "HelmImage": ("HELM_IMAGE", names.HELM_IMAGE),
}


def rbac_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(RBAC.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    assert docs, "no manifests in k8s/rbac"
    return docs


@pytest.mark.parametrize("parameter", sorted(TEMPLATE_PARAMETERS))
def test_template_parameter_defaults_are_the_shared_names(parameter: str) -> None:
    assert load_template()["Parameters"][parameter]["Default"] == TEMPLATE_PARAMETERS[parameter][1]


@pytest.mark.parametrize("parameter", sorted(TEMPLATE_PARAMETERS))
def test_every_function_reading_the_name_gets_it_from_the_parameter(parameter: str) -> None:
    template = load_template()
    variable = TEMPLATE_PARAMETERS[parameter][0]
    readers = {
        name: env[variable]
        for name in resources_of(template, "AWS::Serverless::Function")
        if variable in (env := function_environment(template, name))
    }
    assert readers, f"no function gets {variable}"
    assert all(value == {"Ref": parameter} for value in readers.values()), readers


def test_code_defaults_are_the_shared_names() -> None:
    settings = Settings.from_env({})
    config = ClusterConfig(mode="url", api_url="http://127.0.0.1:1")
    from_settings = ClusterConfig.from_settings(Settings.from_env({"KUBE_API_URL": "http://127.0.0.1:1"}))

    assert (settings.job_namespace, settings.job_service_account) == (names.JOB_NAMESPACE, names.JOB_SERVICE_ACCOUNT)
    assert (config.job_namespace, config.service_account) == (names.JOB_NAMESPACE, names.JOB_SERVICE_ACCOUNT)
    assert (from_settings.job_namespace, from_settings.service_account) == (
        names.JOB_NAMESPACE,
        names.JOB_SERVICE_ACCOUNT,
    )


def test_the_helm_image_is_one_definition_pinned_by_digest_in_template_and_code() -> None:
    """Issue 29 item 7: the template said alpine/helm:3.16.2 while the code said 3.16.4, both mutable tags.

    Breakage tried: the template's HelmImage default back to alpine/helm:3.16.2 (the parametrized default
    test fails), its AllowedPattern dropped (this test fails), DEFAULT_HELM_IMAGE a literal tag (fails)."""
    parameter = load_template()["Parameters"]["HelmImage"]
    config = ClusterConfig(mode="url", api_url="http://127.0.0.1:1")

    assert "@sha256:" in names.HELM_IMAGE and f":{names.HELM_VERSION}@" in names.HELM_IMAGE
    assert parameter["AllowedPattern"] == names.HELM_IMAGE_PATTERN
    assert re.fullmatch(names.HELM_IMAGE_PATTERN, parameter["Default"])
    assert config.helm_image == names.HELM_IMAGE
    assert ClusterConfig.from_settings(Settings.from_env({"KUBE_API_URL": "http://k:1"})).helm_image == names.HELM_IMAGE


@pytest.mark.parametrize("image", ["alpine/helm:3.17.3", "alpine/helm:latest", "alpine/helm@sha256:abc",
                                   "alpine/helm:3.17.3@sha256:" + "A" * 64, "-x@sha256:" + "0" * 64])  # fmt: skip
def test_a_helm_image_without_a_digest_is_refused_at_cold_start(image: str) -> None:
    """Breakage tried: Settings without the helm_image validator: from_env accepts a bare tag."""
    with pytest.raises(SettingsError, match="HELM_IMAGE: .*must be pinned by digest"):
        Settings.from_env({"HELM_IMAGE": image})
    with pytest.raises(ValueError, match="must be pinned by digest"):
        ClusterConfig(mode="url", api_url="http://127.0.0.1:1", helm_image=image)


def test_a_mirrored_image_pinned_by_digest_is_accepted() -> None:
    mirror = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/alpine/helm:3.17.3@sha256:" + "0" * 64
    assert Settings.from_env({"HELM_IMAGE": mirror}).helm_image == mirror
    assert ClusterConfig(mode="url", api_url="http://127.0.0.1:1", helm_image=mirror).helm_image == mirror


def test_rbac_job_namespace_is_the_shared_name() -> None:
    docs = rbac_documents()
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    namespaced = [d for d in docs if d["kind"] in ("Role", "RoleBinding", "ServiceAccount")]

    assert namespace["metadata"]["name"] == names.JOB_NAMESPACE
    for doc in namespaced:
        where = doc["metadata"]["namespace"]
        assert where == names.JOB_NAMESPACE or where.startswith("customer-"), (doc["kind"], doc["metadata"]["name"])


def test_rbac_service_account_is_the_shared_name_everywhere_it_is_named() -> None:
    docs = rbac_documents()
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    account_subjects = [
        s for d in docs if d["kind"] == "RoleBinding" for s in d["subjects"] if s["kind"] == "ServiceAccount"
    ]

    assert (account["metadata"]["name"], account["metadata"]["namespace"]) == (
        names.JOB_SERVICE_ACCOUNT,
        names.JOB_NAMESPACE,
    )
    assert account_subjects
    assert all(
        (s["name"], s["namespace"]) == (names.JOB_SERVICE_ACCOUNT, names.JOB_NAMESPACE) for s in account_subjects
    )


def subjects_of(binding: str, kind: str = "RoleBinding") -> set[str]:
    found = {
        s["name"] for d in rbac_documents() if d["kind"] == kind and d["metadata"]["name"] == binding
        for s in d["subjects"] if s["kind"] == "Group"
    }  # fmt: skip
    assert found, f"no {kind} {binding} in k8s/rbac"
    return found


def test_rbac_binds_each_identity_to_its_own_rights() -> None:
    """Issue 29 item 6: one group for every cluster Lambda meant the sync could create Jobs.

    Breakage tried: 10-lambda-job-namespace.yaml bound to the reader group: the first assertion fails."""
    groups = {
        s["name"] for d in rbac_documents() if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for s in d["subjects"] if s["kind"] == "Group"
    }  # fmt: skip
    assert groups == {names.JOBS_KUBERNETES_GROUP, names.READER_KUBERNETES_GROUP}
    assert subjects_of("customer-upgrades-lambda-jobs") == {names.JOBS_KUBERNETES_GROUP}  # creates Jobs
    assert subjects_of("customer-upgrades-release-state") == {names.JOBS_KUBERNETES_GROUP}
    assert subjects_of("customer-upgrades-release-reader") == {names.READER_KUBERNETES_GROUP}
    assert subjects_of("customer-upgrades-namespace-lister", "ClusterRoleBinding") == {names.READER_KUBERNETES_GROUP}


def test_the_template_maps_each_cluster_workers_role_to_its_identity() -> None:
    """Breakage tried: SyncCustomersKubernetesAccess given the jobs group: this test fails."""
    template = load_template()
    by_folder = {folder: logical for folder, (logical, _) in functions_by_folder(template).items()}
    entries = resources_of(template, "AWS::EKS::AccessEntry")
    mapped: dict[str, list[str]] = {}
    for entry in entries.values():
        assert entry["Condition"] == "IsEksMode" and entry["Properties"]["Type"] == "STANDARD"
        arn = entry["Properties"]["PrincipalArn"]
        role = arn["Fn::GetAtt"][0] if isinstance(arn["Fn::GetAtt"], list) else arn["Fn::GetAtt"].split(".")[0]
        mapped[role] = entry["Properties"]["KubernetesGroups"]
    expected = {f"{by_folder[f]}Role": [names.READER_KUBERNETES_GROUP] for f in names.READER_FUNCTIONS}
    expected |= {f"{by_folder[f]}Role": [names.JOBS_KUBERNETES_GROUP] for f in names.JOBS_FUNCTIONS}
    assert mapped == expected
    # every function that reaches the cluster (it gets CLUSTER_MODE) is one of the two identities
    cluster_workers = {f for f, (logical, _) in functions_by_folder(template).items()
                       if "CLUSTER_MODE" in function_environment(template, logical)}  # fmt: skip
    assert cluster_workers == {*names.READER_FUNCTIONS, *names.JOBS_FUNCTIONS}


def test_the_admission_policy_names_the_shared_names() -> None:
    docs = [d for p in sorted((ROOT / "k8s" / "admission").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    (binding,) = [d for d in docs if d and d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": names.JOB_NAMESPACE
    }
    (policy,) = [d for d in docs if d and d["kind"] == "ValidatingAdmissionPolicy"]
    expressions = "\n".join(v["expression"] for v in policy["spec"]["validations"])
    assert f"== '{names.HELM_IMAGE}'" in expressions and f"== '{names.JOB_SERVICE_ACCOUNT}'" in expressions


@pytest.mark.parametrize("doc", ["docs/tutorials/aws.md", "docs/explanation/security.md", "k8s/README.md"])
def test_docs_name_the_shared_names(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    for value in (names.JOB_NAMESPACE, names.JOB_SERVICE_ACCOUNT, names.JOBS_KUBERNETES_GROUP,
                  names.READER_KUBERNETES_GROUP):  # fmt: skip
        assert f"`{value}" in text, f"{doc} does not name {value}"
