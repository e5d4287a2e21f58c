"""Names shared by the code, template.yaml and the RBAC in k8s/: change them here and only here.

tests/test_names.py fails when the template's parameter defaults, the settings and cluster defaults,
or the manifests in k8s/ drift from these values.
"""

from __future__ import annotations

# Where the helm Jobs run, and the identity helm runs as inside them (k8s/rbac/00, 10 and 30).
JOB_NAMESPACE = "upgrade-system"
JOB_SERVICE_ACCOUNT = "upgrade-runner"
# The Kubernetes group the cluster workers' IAM role is mapped to (EKS access entry or aws-auth).
LAMBDA_KUBERNETES_GROUP = "customer-upgrades:lambda"

# The image of the helm Job's container: the template's HelmImage default, the code's HELM_IMAGE default and
# the admission policy in k8s/ (which admits only Jobs running it) all read it here. Always pinned by
# digest, so a tag moved in the registry can never change what runs with the runner's rights; HELM_IMAGE
# and HelmImage refuse an image without one (HELM_IMAGE_PATTERN). README "Mirroring the helm image" says
# how to copy it into your own registry and point HelmImage at the copy.
HELM_VERSION = "3.17.3"
HELM_IMAGE = f"alpine/helm:{HELM_VERSION}@sha256:d899e6316789fec04ee95300a18e454b7942539cbb3d89bde3e0655d6ca2e895"
# <registry[:port]/>repository<:tag>@sha256:<64 hex>: a reference in the OCI distribution grammar, the
# digest required (the tag is only for people).
HELM_IMAGE_PATTERN = (
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?@sha256:[0-9a-f]{64}$"
)
