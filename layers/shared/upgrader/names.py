"""Names shared by the code, template.yaml and the RBAC in k8s/: change them here and only here.

tests/test_names.py fails when the template's parameter defaults, the settings and cluster defaults,
or the manifests in k8s/rbac drift from these values.
"""

from __future__ import annotations

# Where the helm Jobs run, and the identity helm runs as inside them (k8s/rbac/00, 10 and 30).
JOB_NAMESPACE = "upgrade-system"
JOB_SERVICE_ACCOUNT = "upgrade-runner"
# The Kubernetes group the cluster workers' IAM role is mapped to (EKS access entry or aws-auth).
LAMBDA_KUBERNETES_GROUP = "customer-upgrades:lambda"
