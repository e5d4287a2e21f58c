"""The image pre-flight for 1,000 customers against a real registry (issue 22's figures).

Starts Debian's docker-registry on 127.0.0.1 (upgradectl/local/registry.py), pushes small images built here
with skopeo, then runs the pre-flight (`upgrader.images.preflight.run_preflight` with the distribution
adapter) for 1,000 customers whose releases name 3 repositories, each customer on one of 3 current versions:
3 target images and 9 rollback images. It prints the pre-flight's time (median of the runs, each with a new
adapter and cache, as each deploy has) and the registry requests, counted in the registry's own access log,
then the same through the bearer-token front (tests/support/registry_proxy.py: the 401, the token realm).

    .venv/bin/python -m benchmarks.preflight [--customers 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from upgrader.images.distribution import DistributionRegistry
from upgrader.images.preflight import CustomerImages, customer_images, run_preflight

from tests.support.registry_proxy import ProxyRules, RegistryProxy
from upgradectl.local.registry import LocalRegistry, Skopeo, write_oci_image

REPOSITORIES = ("customer-stack/api", "customer-stack/dashboard", "customer-stack/exporter")
CURRENT = ("v1.0.0", "v1.0.1", "v1.1.0")
TARGET = "v1.2.0"


def fleet(host: str, customers: int) -> list[CustomerImages]:
    return [
        customer_images(f"c-{n:05d}", f"{host}/{REPOSITORIES[n % 3]}", TARGET, CURRENT[(n // 3) % 3])
        for n in range(customers)
    ]


def measure(host: str, customers: int, runs: int, count_requests) -> tuple[float, int, int]:
    """(median seconds, manifest requests of one run, all HTTP requests of one run)."""
    times, requests = [], []
    for _ in range(runs):
        before = count_requests()
        adapter = DistributionRegistry(timeout=5)
        started = time.perf_counter()
        result = run_preflight(fleet(host, customers), adapter)
        times.append(time.perf_counter() - started)
        requests.append((count_requests() - before, adapter.requests))
        assert len(result.targets) == len(result.rollbacks) == customers, "every image was pushed"
    return statistics.median(times), requests[-1][0], requests[-1][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    skopeo_path = shutil.which("skopeo")
    if not skopeo_path:
        raise SystemExit("skopeo is not installed: apt-get install -y skopeo")
    with tempfile.TemporaryDirectory(prefix="bench-preflight-") as tmp:
        work = Path(tmp)
        registry = LocalRegistry(work / "registry").start()
        try:
            skopeo = Skopeo(skopeo_path, work / "skopeo")
            for repository in REPOSITORIES:
                for tag in (*CURRENT, TARGET):
                    layout = work / "layouts" / repository.replace("/", "_") / tag
                    write_oci_image(layout, tag, f"{repository} {tag}".encode())
                    skopeo.push(layout, registry.host, repository, tag)

            def logged() -> int:
                return sum(1 for r in registry.requests() if "/manifests/" in r.path and r.method == "HEAD")

            seconds, manifests, http = measure(registry.host, args.customers, args.runs, logged)
            distinct = len({(r, t) for r in REPOSITORIES for t in (*CURRENT, TARGET)})
            print(f"customers: {args.customers}, distinct images: {distinct} (3 targets, 9 rollback images)")
            print(f"direct:       {seconds * 1000:7.1f} ms median of {args.runs}; registry manifest requests "
                  f"(its access log): {manifests}; HTTP requests made: {http}")  # fmt: skip
            proxy = RegistryProxy(registry.host, ProxyRules(auth="bearer")).start()
            try:
                seconds, _, http = measure(proxy.host, args.customers, args.runs, lambda: len(proxy.seen))
                answered = len([s for s in proxy.seen if "/manifests/" in s[1] and s[2] == 200]) // args.runs
                print(f"bearer token: {seconds * 1000:7.1f} ms median of {args.runs}; manifest requests answered: "
                      f"{answered}; HTTP requests made (401s and token requests included): {http}")  # fmt: skip
            finally:
                proxy.stop()
            # For scale: what asking per customer would cost (no cache, one after another, as helm does today).
            adapter, started = DistributionRegistry(timeout=5), time.perf_counter()
            for customer in fleet(registry.host, args.customers):
                for reference in (customer.target, customer.rollback):
                    if reference is not None:
                        adapter.resolve(reference)
            print(f"per customer: {(time.perf_counter() - started) * 1000:7.1f} ms, {adapter.requests} HTTP requests "
                  "(no cache: what the pre-flight avoids)")  # fmt: skip
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
