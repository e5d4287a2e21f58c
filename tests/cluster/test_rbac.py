"""Least privilege in k8s/rbac: no wildcards, nothing cluster-wide, the runner bound per namespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

RBAC = Path(__file__).resolve().parents[2] / "k8s" / "rbac"


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
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "customer-upgrades:lambda"}
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
