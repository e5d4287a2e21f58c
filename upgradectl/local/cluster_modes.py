"""Where the local stack's helm Jobs run besides the simulated cluster: a real cluster named by a kubeconfig
(`--kubeconfig`), or the real control plane the stack starts itself (upgradectl/local/realcluster); and the
error that stops the stack at start-up."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("upgrade-local")


class StartupError(RuntimeError):
    """The stack cannot start; the message says why (printed, exit status EXIT_STARTUP_FAILED)."""


def start_real_cluster(args: argparse.Namespace, stack: contextlib.ExitStack) -> Any:
    """The real control plane, chart registry and node agent (upgradectl/local/realcluster); stopped on exit."""
    from upgradectl.local.realcluster.agent import FaultRule
    from upgradectl.local.realcluster.cluster import RealCluster
    from upgradectl.local.realcluster.processes import StartError

    LOGGER.info("starting the real control plane (the first start builds it: several minutes) ...")
    cluster = RealCluster(helm_major=args.helm, faults=FaultRule(broken_tag_pattern=args.never_ready_tag))
    stack.callback(cluster.stop)
    try:
        cluster.start()
    except (StartError, OSError, RuntimeError) as exc:
        raise StartupError(f"the real cluster did not start: {exc}") from exc
    return cluster


def kubeconfig_path(given: str) -> Path:
    if given:
        path = Path(given).expanduser()
    else:
        env = os.environ.get("KUBECONFIG", "")
        path = Path(env.split(os.pathsep)[0]).expanduser() if env else Path.home() / ".kube" / "config"
    if not path.is_file():
        raise StartupError(f"no kubeconfig file at {path}")
    return path.resolve()


def describe_real_cluster(path: Path) -> str:
    """Load the kubeconfig now (fail at start-up, not at the first Job) and name what it points at."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    configuration = k8s.Configuration()
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=str(path))
        k8s_config.load_kube_config(config_file=str(path), client_configuration=configuration, persist_config=False)
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        raise StartupError(f"unusable kubeconfig {path}: {exc}") from exc
    del contexts
    name = (current or {}).get("name", "?")
    return f"REAL cluster from kubeconfig {path}, context {name!r}, server {configuration.host}: helm Jobs run there"
