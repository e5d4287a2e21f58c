"""The simulated customers' workload metrics: valid Prometheus text with the four labels, deterministic for
a seed, error rates following the fault rules, and the version read from what the simulated cluster runs."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from upgradectl.local.cluster import SimulatedCluster
from upgradectl.local.workload_metrics import FaultRule, Workload, WorkloadMetrics, cluster_workloads

FLEET = [Workload("cust_a", "customer-a", "api", "v1.0.0"), Workload("cust_b", "customer-b", "api", "v1.1.0-bad")]


def samples(metrics: WorkloadMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def test_the_text_format_has_counters_and_a_cumulative_histogram_per_workload():
    metrics = WorkloadMetrics(lambda: FLEET, seed=1, clock=lambda: 0.0)
    metrics.advance(60)
    found = samples(metrics)
    labels = (("component", "api"), ("customer", "cust_a"), ("namespace", "customer-a"), ("version", "v1.0.0"))
    requests = found[("app_requests_total", labels)]
    assert 1000 < requests < 1400  # 20 requests a second for a minute, with noise
    buckets = [v for (name, lab), v in sorted(found.items(), key=lambda kv: float(dict(kv[0][1]).get("le", "inf")))
               if name == "app_request_duration_seconds_bucket" and dict(lab)["customer"] == "cust_a"]  # fmt: skip
    assert buckets == sorted(buckets) and buckets[-1] == requests  # cumulative; +Inf counts every request
    assert found[("app_request_duration_seconds_count", labels)] == requests


def test_the_same_seed_and_the_same_time_give_the_same_numbers_and_another_seed_others():
    def run(seed: int) -> dict:
        metrics = WorkloadMetrics(lambda: FLEET, seed=seed, clock=lambda: 0.0)
        for _ in range(3):
            metrics.advance(10)
        return samples(metrics)

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_a_version_matching_a_fault_rule_has_its_error_rate():
    metrics = WorkloadMetrics(lambda: FLEET, seed=2, customer_spread=0.0, clock=lambda: 0.0,
                              rules=[FaultRule("*-bad", error_rate=0.03)])  # fmt: skip
    metrics.advance(3600)
    rates = {w.customer: s.errors / s.requests for w, s in metrics._series.items()}
    assert 0.004 < rates["cust_a"] < 0.006
    assert 0.027 < rates["cust_b"] < 0.033


def test_the_version_is_the_image_the_simulated_cluster_runs():
    with SimulatedCluster() as cluster:
        cluster.add_release("customer-a", "customer-a", values={"api.image.tag": "v1.0.0"})
        read = cluster_workloads(cluster, [("cust_a", "customer-a", "customer-a")], ["api", "exporter"])
        running = {w.component: w.version for w in read()}
        assert running["api"] == "v1.0.0" and "exporter" in running
        cluster.add_release("customer-a", "customer-a", revision=2, values={"api.image.tag": "v1.1.0-bad"})
        assert {w.component: w.version for w in read()}["api"] == "v1.1.0-bad"
