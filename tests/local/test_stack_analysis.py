"""`upgrade-local --analysis`: the simulated customers' workloads expose their metrics and a real Prometheus
(Debian's package) scrapes them; an upgrade changes the version label of the upgraded customers' series, a
bad version raises their error rate; the stack stops its Prometheus with itself."""

from __future__ import annotations

import re
import signal
import time
from datetime import UTC, datetime

import pytest
from upgrader.analysis.checks import AnalysisCheck
from upgrader.analysis.providers.prometheus import PrometheusProvider
from upgrader.analysis.providers.web import FetchError

from tests.analysis.conftest import target_for
from tests.local.conftest import StackProcess, port_is_free, stack_env
from tests.support.database import temporary_database
from tests.support.tools import require_tool

pytestmark = pytest.mark.e2e
CUSTOMERS = 6


def count(provider: PrometheusProvider, query: str) -> float:
    try:
        return provider.instant(f"count({query}) or vector(0)", datetime.now(UTC))
    except FetchError:
        return 0.0


def wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.5)


def test_the_workloads_metrics_follow_the_versions_the_cluster_runs(tmp_path):
    require_tool("prometheus", "/usr/bin/prometheus")
    with temporary_database(prefix="upgrades_analysis") as url:
        stack = StackProcess(["--analysis", "--customers", str(CUSTOMERS), "--job-seconds", "0.2", "--poll-seconds", "0"],
                             stack_env(DATABASE_URL=url), tmp_path)  # fmt: skip
        try:
            banner = stack.stdout_path.read_text()
            found = re.search(
                r"Analysis .* at http://(127\.0\.0\.1:\d+)/metrics .*; Prometheus (http://127\.0\.0\.1:\d+)", banner
            )
            assert found, banner
            metrics_address, prometheus_url = found.groups()
            provider = PrometheusProvider(prometheus_url, timeout=5)
            wait_for(lambda: count(provider, 'app_requests_total{component="api"}') == CUSTOMERS, "api series")

            code, body = stack.request("POST", "/api/upgrades/deploy",
                                       {"component": "api", "version": "v9.9.9-bad", "strategy": "all"})  # fmt: skip
            assert code in (200, 201, 202), body
            stack.wait_status(str(body["upgradeId"]), {"completed"}, timeout=120)
            wait_for(lambda: count(provider, 'app_requests_total{component="api",version="v9.9.9-bad"}') == CUSTOMERS,
                     "the new version's series")  # fmt: skip
            time.sleep(4)
            check = AnalysisCheck.model_validate({
                "name": "requests", "provider": "prometheus",
                "query": 'sum(app_requests_total{customer="{{customerId}}",component="{{component}}",version="{{version}}"})',
                "failureCondition": {"op": "<", "value": 1}, "judgement": {"kind": "threshold"},
            })  # fmt: skip
            measured = provider.measure(check, target_for("cust_abc123", version="v9.9.9-bad"))
            assert measured.error is None and (measured.value or 0) > 0, measured
        finally:
            assert stack.stop(signal.SIGINT) == 0, stack.output
        assert port_is_free(int(prometheus_url.rsplit(":", 1)[1]))
        assert port_is_free(int(metrics_address.rsplit(":", 1)[1]))
