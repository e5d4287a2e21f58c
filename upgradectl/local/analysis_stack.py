"""`upgrade-local --analysis`: the simulated customers' workloads expose their metrics on 127.0.0.1 and a
real Prometheus (Debian's package) scrapes them every second, ready for metric analysis between waves."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any

from upgrader.infra.components import component_names
from upgrader.infra.db import Database
from upgrader.infra.settings import get_settings

from upgradectl.local.prometheus_server import PrometheusServer, PrometheusUnavailable, find_binary
from upgradectl.local.workload_metrics import FaultRule, MetricsServer, WorkloadMetrics, cluster_workloads


class AnalysisUnavailable(RuntimeError):
    """--analysis could not start (no prometheus binary, or it did not get ready)."""


def start_analysis(args: argparse.Namespace, simulated: Any, db: Database, stack: contextlib.ExitStack) -> list[str]:
    """Start the workloads' metrics and Prometheus; the banner's lines."""
    binary = find_binary()
    if binary is None:
        raise AnalysisUnavailable("--analysis needs prometheus (apt-get install -y prometheus)")
    with db.transaction() as cur:
        cur.execute("SELECT id, namespace, release_name FROM customers WHERE status <> 'decommissioned' ORDER BY id")
        releases = [(r["id"], r["namespace"], r["release_name"]) for r in cur.fetchall()]
    rules = [FaultRule(pattern, error_rate=0.03, latency_factor=1.5) for pattern in args.bad_version]
    metrics = WorkloadMetrics(cluster_workloads(simulated, releases, component_names()), seed=args.seed, rules=rules)
    server = MetricsServer(metrics).start()
    stack.callback(server.stop)
    try:
        prometheus = PrometheusServer(binary, [server.address]).start()
    except PrometheusUnavailable as exc:
        raise AnalysisUnavailable(str(exc)) from exc
    stack.callback(prometheus.stop)
    # The analysis gate between waves (functions/analyze_wave, in this process) queries this Prometheus.
    os.environ["ANALYSIS_PROMETHEUS_URL"] = prometheus.url
    get_settings.cache_clear()
    return [
        f"  Analysis        workload metrics of {len(releases)} customers at http://{server.address}/metrics "
        f"(error rate 0.5 %, {' '.join(args.bad_version)} versions 3 %); Prometheus {prometheus.url} ({binary})"
    ]
