"""The simulated customers' own workloads, as Prometheus sees them (issue 20: metric analysis locally).

Each (customer, component) workload serves requests and exposes, in the Prometheus text format:

    app_requests_total{customer, namespace, component, version}
    app_errors_total{customer, namespace, component, version}
    app_request_duration_seconds_bucket / _sum / _count{customer, namespace, component, version, le}

`version` is the image tag the workload runs now (read from the simulated cluster's Deployment, so a helm
upgrade or rollback changes it); a new version starts new series, as a real pod's metrics do. How a
version behaves comes from fault rules: a version matching a rule's pattern (fnmatch) gets that rule's
error rate and latency factor (`*-bad` at 3 % by default); any other runs at the base error rate (0.5 %).
Each customer has its own steady baseline (a lognormal factor, seeded by its id) and each scrape adds
seeded noise, so the same seed and the same sequence of `advance` calls give the same numbers.
"""

from __future__ import annotations

import fnmatch
import math
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

REQUESTS = "app_requests"
ERRORS = "app_errors"
DURATION = "app_request_duration_seconds"
BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5)
LABELS = ("customer", "namespace", "component", "version")


@dataclass(frozen=True, slots=True)
class Workload:
    customer: str
    namespace: str
    component: str
    version: str


@dataclass(frozen=True, slots=True)
class FaultRule:
    """Versions matching `pattern` (fnmatch) of `component` ("*": any) misbehave."""

    pattern: str
    error_rate: float = 0.03
    latency_factor: float = 1.0
    component: str = "*"

    def matches(self, workload: Workload) -> bool:
        return fnmatch.fnmatchcase(workload.version, self.pattern) and fnmatch.fnmatchcase(
            workload.component, self.component
        )


DEFAULT_RULES = (FaultRule("*-bad", error_rate=0.03, latency_factor=1.5),)


@dataclass
class _Series:
    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total_seconds: float = 0.0


class WorkloadMetrics(Collector):
    """The counters and histograms of every workload `source` lists; `advance` moves simulated time."""

    def __init__(
        self,
        source: Callable[[], Iterable[Workload]],
        *,
        seed: int = 0,
        requests_per_second: float = 20.0,
        base_error_rate: float = 0.005,
        base_latency_seconds: float = 0.08,
        rules: Iterable[FaultRule] = DEFAULT_RULES,
        customer_spread: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._seed = seed
        self._rps = requests_per_second
        self._base_error = base_error_rate
        self._base_latency = base_latency_seconds
        self._rules = tuple(rules)
        self._spread = customer_spread
        self._clock = clock
        self._last = clock()
        self._series: dict[Workload, _Series] = {}
        self._random: dict[Workload, random.Random] = {}
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def behaviour(self, workload: Workload) -> tuple[float, float]:
        """(error rate, median latency in seconds) of a workload: its version's rule and its customer's baseline."""
        rule = next((r for r in self._rules if r.matches(workload)), None)
        baseline = math.exp(
            self._spread * _stable_random(self._seed, workload.customer, workload.component).gauss(0, 1)
        )
        error_rate = (rule.error_rate if rule else self._base_error) * baseline
        latency = self._base_latency * (rule.latency_factor if rule else 1.0) * (0.9 + 0.2 * baseline / (1 + baseline))
        return min(error_rate, 1.0), latency

    def advance(self, seconds: float | None = None) -> None:
        """Serve `seconds` of traffic on every running workload (None: the time since the last call)."""
        with self._lock:
            now = self._clock()
            elapsed = now - self._last if seconds is None else seconds
            self._last = now
            if elapsed <= 0:
                return
            for workload in self._source():
                self._serve(workload, elapsed)

    def _serve(self, workload: Workload, seconds: float) -> None:
        series = self._series.setdefault(workload, _Series())
        rng = self._random.setdefault(workload, _stable_random(self._seed, *(getattr(workload, k) for k in LABELS)))
        error_rate, median = self.behaviour(workload)
        expected = self._rps * seconds
        n = max(0, round(rng.gauss(expected, math.sqrt(expected)))) if expected > 0 else 0
        errors = _binomial(rng, n, error_rate)
        series.requests += n
        series.errors += errors
        # latencies: lognormal around the median (sigma 0.5); counts per bucket from a sample of at most 200
        sample = [median * math.exp(0.5 * rng.gauss(0, 1)) for _ in range(min(n, 200))]
        scale = n / len(sample) if sample else 0.0
        for i, bound in enumerate(BUCKETS):
            series.buckets[i] += round(scale * sum(1 for s in sample if s <= bound))
        series.total_seconds += scale * sum(sample)

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(REQUESTS, "Requests served by a customer's workload", labels=LABELS)
        errors = CounterMetricFamily(ERRORS, "Requests answered with an error (5xx)", labels=LABELS)
        duration = HistogramMetricFamily(DURATION, "Time to answer a request", labels=LABELS)
        for workload, series in sorted(
            self._series.items(), key=lambda item: tuple(getattr(item[0], k) for k in LABELS)
        ):
            labels = [getattr(workload, k) for k in LABELS]
            requests.add_metric(labels, series.requests)
            errors.add_metric(labels, series.errors)
            cumulative = [(str(b), float(c)) for b, c in zip(BUCKETS, series.buckets, strict=True)]
            duration.add_metric(labels, [*cumulative, ("+Inf", float(series.requests))], series.total_seconds)
        yield from (requests, errors, duration)

    def render(self) -> bytes:
        self.advance()
        return generate_latest(self.registry)


def _stable_random(seed: int, *parts: str) -> random.Random:
    return random.Random(zlib.crc32("\0".join([str(seed), *parts]).encode()))  # noqa: S311 - simulated noise


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0:
        return 0
    if n < 100:
        return sum(1 for _ in range(n) if rng.random() < p)
    return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


def cluster_workloads(
    cluster: Any, releases: Iterable[tuple[str, str, str]], components: Iterable[str]
) -> Callable[[], list[Workload]]:
    """The workloads running in the simulated cluster: (customer id, namespace, release) x component, with the
    image tag of the component's Deployment (a workload not created yet, or blue-green slots, are left out)."""
    listed, names = list(releases), list(components)

    def read() -> list[Workload]:
        found = []
        for customer, namespace, release in listed:
            for component in names:
                deployment = cluster.workload(namespace, release, component)
                containers = (
                    (deployment or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers")
                ) or []
                image = containers[0].get("image", "") if containers else ""
                tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
                if tag:
                    found.append(Workload(customer, namespace, component, tag))
        return found

    return read


class MetricsServer:
    """GET /metrics of a WorkloadMetrics on 127.0.0.1 (a free port unless given), in a daemon thread."""

    def __init__(self, metrics: WorkloadMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        render = metrics.render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="workload-metrics", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
