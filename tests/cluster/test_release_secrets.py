# mypy: disable-error-code="arg-type"
# (a raw dict body, as the API server reads it)
"""The release's secret values reach the redactor, never the state: release_status reads them from the Secrets in
the release's rendered manifest, over HTTP with the official client as the jobs identity (issue 29 item 4)."""

from __future__ import annotations

import base64

import kubernetes
from upgrader.cluster.jobs import KubernetesClusterGateway
from upgrader.cluster.release import encode_release_data, secret_name

from upgradectl.local.cluster import SimulatedCluster

MANIFEST = "\n".join([
    "---", "apiVersion: v1", "kind: Secret", "metadata: {name: stack-db}", "type: Opaque", "data:",
    f"  password: {base64.b64encode(b'db-pass-4242').decode()}",
    "---", "apiVersion: apps/v1", "kind: Deployment", "metadata: {name: stack-api}",
])  # fmt: skip


def test_release_status_knows_the_releases_secret_values_and_never_shows_them(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    """Breakage tried: release_status without secrets=record.secret_values(): `secrets` is empty."""
    cluster.onboard("customer-sec")
    record = {"name": "stack", "namespace": "customer-sec", "version": 1, "info": {"status": "deployed"},
              "chart": {"metadata": {"name": "customer-stack", "version": "1.5.0"}, "values": {}},
              "config": {"api": {"image": {"tag": "v1.0.0"}}, "auth": {"token": "values-token-77"}},
              "manifest": MANIFEST}  # fmt: skip
    body = {"metadata": {"name": secret_name("stack", 1), "labels": {"owner": "helm", "name": "stack",
            "status": "deployed", "version": "1"}}, "type": "helm.sh/release.v1",
            "data": {"release": encode_release_data(record)}}  # fmt: skip
    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as admin:
        kubernetes.client.CoreV1Api(admin).create_namespaced_secret("customer-sec", body)

    release = gateway.release_status("customer-sec", "stack")

    assert release.versions["api"] == "v1.0.0"
    assert release.secrets == {"db-pass-4242", "values-token-77"}
    assert "db-pass-4242" not in repr(release) and "values-token-77" not in str(release.snapshot())


def test_a_tag_the_version_grammar_refuses_is_no_version_of_the_release(
    cluster: SimulatedCluster, gateway: KubernetesClusterGateway
) -> None:
    """Issue 29 item 5, after helm: what release_status reads goes into the inventory (varchar(128)) when the
    customer's result is recorded; a 201-character tag another hand put on a component failed that record.

    Breakage tried: release_status without _valid_tag: versions carry the long tag and the markup."""
    cluster.add_release("customer-tags", "stack", values={"api.image.tag": "v1.0.0", "dashboard.image.tag": "v" + "9" * 200,
                                                          "exporter.image.tag": "<!channel>"})  # fmt: skip

    versions = gateway.release_status("customer-tags", "stack").versions

    assert versions["api"] == "v1.0.0"
    assert versions["dashboard"] is None and versions["exporter"] is None
