"""Names shared by the code, template.yaml and the RBAC in k8s/: change them here and only here.

tests/test_names.py fails when the template's parameter defaults, the settings and cluster defaults,
or the manifests in k8s/ drift from these values.
"""

from __future__ import annotations

# Where the helm Jobs run, and the identity helm runs as inside them (k8s/rbac/00, 10 and 30).
JOB_NAMESPACE = "upgrade-system"
JOB_SERVICE_ACCOUNT = "upgrade-runner"
# The Kubernetes groups the cluster workers' IAM roles are mapped to (EKS access entries or aws-auth), one
# per identity (k8s/README.md): the reader (sync_customers, which parses untrusted release data, and
# check_rollout) reads releases and workloads and can create nothing; the jobs identity (start_helm_job,
# check_helm_job, reconcile_runs) creates and reads the helm Jobs, and reads release state.
READER_KUBERNETES_GROUP = "customer-upgrades:reader"
JOBS_KUBERNETES_GROUP = "customer-upgrades:jobs"
# Which identity each cluster worker acts as (the template maps each function's role; tests check both).
READER_FUNCTIONS = ("sync_customers", "check_rollout")
JOBS_FUNCTIONS = ("start_helm_job", "check_helm_job", "reconcile_runs")

# The image of the helm Job's container: the template's HelmImage default, the code's HELM_IMAGE default and
# the admission policy in k8s/ (which admits only Jobs running it) all read it here. Always pinned by
# digest, so a tag moved in the registry can never change what runs with the runner's rights; HELM_IMAGE
# and HelmImage refuse an image without one (HELM_IMAGE_PATTERN). docs/explanation/security.md
# ("Mirroring the helm image") says how to copy it into your own registry and point HelmImage at the copy.
HELM_VERSION = "3.17.3"
HELM_IMAGE = f"alpine/helm:{HELM_VERSION}@sha256:d899e6316789fec04ee95300a18e454b7942539cbb3d89bde3e0655d6ca2e895"
# <registry[:port]/>repository<:tag>@sha256:<64 hex>: a reference in the OCI distribution grammar, the
# digest required (the tag is only for people).
HELM_IMAGE_PATTERN = (
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?@sha256:[0-9a-f]{64}$"
)
