"""Least privilege in k8s/rbac: no wildcards, nothing cluster-wide, the runner bound per namespace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

RBAC = Path(__file__).resolve().parents[2] / "k8s" / "rbac"
CHARTS = Path(__file__).resolve().parents[2] / "charts"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(RBAC.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def test_no_wildcards_anywhere() -> None:
    for role in by_kind("Role") + by_kind("ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"], role["metadata"]["name"]
            assert "*" not in rule["resources"], role["metadata"]["name"]
            assert "*" not in rule.get("apiGroups", []), role["metadata"]["name"]


def test_only_namespace_listing_is_bound_cluster_wide() -> None:
    # Discovery must list namespaces (cluster-scoped); that and nothing else is granted cluster-wide.
    (binding,) = by_kind("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "customer-upgrades-namespace-lister",
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "customer-upgrades:reader"}
    ]
    (role,) = [r for r in by_kind("ClusterRole") if r["metadata"]["name"] == "customer-upgrades-namespace-lister"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}]
    assert all(b["metadata"].get("namespace") for b in by_kind("RoleBinding"))


def test_discovery_reads_releases_only_through_the_per_namespace_reader() -> None:
    # What the sync reads inside a customer namespace: its Helm release Secrets (LIST with a selector).
    (role,) = [r for r in by_kind("ClusterRole") if r["metadata"]["name"] == "customer-upgrades-release-reader"]
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]} in role["rules"]
    bound = [b for b in by_kind("RoleBinding") if b["roleRef"]["name"] == "customer-upgrades-release-reader"]
    assert bound and all(b["metadata"]["namespace"].startswith("customer-") for b in bound)


def test_lambda_rights_in_the_job_namespace() -> None:
    (role,) = [r for r in by_kind("Role") if r["metadata"]["name"] == "customer-upgrades-lambda-jobs"]
    assert role["metadata"]["namespace"] == "upgrade-system"
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("batch",), ("jobs",))] == {"create", "get", "list", "watch", "delete"}
    assert rules[(("",), ("pods",))] == {"get", "list"}
    assert rules[(("",), ("pods/log",))] == {"get"}


def test_release_reader_is_read_only() -> None:
    (role,) = [r for r in by_kind("ClusterRole") if r["metadata"]["name"] == "customer-upgrades-release-reader"]
    assert all(set(rule["verbs"]) <= {"get", "list"} for rule in role["rules"])


def test_runner_is_bound_only_by_rolebindings_in_customer_namespaces() -> None:
    bindings = [b for b in by_kind("RoleBinding") if b["roleRef"]["name"] == "customer-upgrades-helm-runner"]
    assert bindings
    for binding in bindings:
        assert binding["metadata"]["namespace"].startswith("customer-")
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "upgrade-runner", "namespace": "upgrade-system"}
        ]
    (account,) = by_kind("ServiceAccount")
    assert account["metadata"] == {**account["metadata"], "name": "upgrade-runner", "namespace": "upgrade-system"}


def test_release_reader_grants_exactly_the_health_check_reads() -> None:
    (role,) = [r for r in by_kind("ClusterRole") if r["metadata"]["name"] == "customer-upgrades-release-reader"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("",), ("secrets",)): {"get", "list"},
        (("apps",), ("deployments", "statefulsets")): {"get", "list"},
        (("",), ("services/proxy",)): {"get"},  # GET through the service proxy only, nothing else
    }


def test_only_the_jobs_identity_may_create_jobs() -> None:
    """Issue 29 item 6: the reader (sync_customers, check_rollout) is bound nowhere Jobs can be created.

    Breakage tried: the reader group added to 10-lambda-job-namespace.yaml's RoleBinding: this fails."""
    job_rights = {r["metadata"]["name"] for r in by_kind("Role") + by_kind("ClusterRole")
                  if any("jobs" in rule["resources"] and "create" in rule["verbs"] for rule in r["rules"])}  # fmt: skip
    holders = {
        s["name"] for b in by_kind("RoleBinding") + by_kind("ClusterRoleBinding") if b["roleRef"]["name"] in job_rights
        for s in b["subjects"]
    }  # fmt: skip
    assert holders == {"customer-upgrades:jobs"}
    (binding,) = [b for b in by_kind("RoleBinding") if b["roleRef"]["name"] == "customer-upgrades-lambda-jobs"]
    assert binding["metadata"]["namespace"] == "upgrade-system"


def test_the_jobs_identity_reads_only_release_secrets_in_customer_namespaces() -> None:
    (role,) = [r for r in by_kind("ClusterRole") if r["metadata"]["name"] == "customer-upgrades-release-state"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
    bound = [b for b in by_kind("RoleBinding") if b["roleRef"]["name"] == "customer-upgrades-release-state"]
    assert bound and all(b["metadata"]["namespace"].startswith("customer-") for b in bound)
    assert all(b["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                  "name": "customer-upgrades:jobs"}] for b in bound)  # fmt: skip


# kind a chart renders -> (API group, resource) the runner needs to apply it. A chart with a kind missing
# here fails the test below: add the kind here AND a rule to 30-helm-runner.yaml (the place to extend).
KIND_RESOURCES = {"Deployment": ("apps", "deployments"), "Service": ("", "services")}
WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]


def rendered_kinds() -> set[str]:
    kinds: set[str] = set()
    for template in CHARTS.glob("*/templates/*.yaml"):
        kinds |= set(re.findall(r"^kind:\s*(\w+)\s*$", template.read_text(encoding="utf-8"), re.M))
    assert kinds, "no kind found in charts/*/templates"
    return kinds


def test_the_runner_writes_exactly_the_kinds_the_charts_render() -> None:
    """Issue 29 item 6: the runner could write ConfigMaps, Jobs, CronJobs, Ingresses, NetworkPolicies, PDBs,
    HPAs, StatefulSets, DaemonSets, ServiceAccounts and PVCs in every customer namespace, none of which the
    charts render.

    Breakage tried: the old rule for configmaps (or batch jobs/cronjobs) put back: this test fails."""
    (role,) = [r for r in by_kind("ClusterRole") if r["metadata"]["name"] == "customer-upgrades-helm-runner"]
    writes = {(group, resource) for rule in role["rules"] if {"create", "patch", "delete"} & set(rule["verbs"])
              for group in rule["apiGroups"] for resource in rule["resources"]}  # fmt: skip
    unknown = rendered_kinds() - set(KIND_RESOURCES)
    assert not unknown, f"charts render {unknown}: map them in KIND_RESOURCES and grant them in 30-helm-runner.yaml"
    needed = {KIND_RESOURCES[kind] for kind in rendered_kinds()}
    assert writes == needed | {("", "secrets")}  # Helm's own release storage
    assert all(rule["verbs"] == WRITE for rule in role["rules"] if {"create"} & set(rule["verbs"]))
    reads = {(g, r) for rule in role["rules"] if set(rule["verbs"]) == {"get", "list", "watch"}
             for g in rule["apiGroups"] for r in rule["resources"]}  # fmt: skip
    assert reads == {("", "pods"), ("", "events"), ("apps", "replicasets")}  # what --wait follows
