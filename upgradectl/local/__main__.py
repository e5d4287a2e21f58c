"""`upgrade-local` (`make run`): the whole product on one machine, at http://localhost:3100.

    PostgreSQL        DATABASE_URL, or an embedded server under .local/pgdata (started and stopped here)
    API               the real api_* handlers behind a local HTTP server (the spec's paths)
    Step Functions    the real statemachine/upgrade.asl.json executed by moto, real worker handlers
    Cluster           SIMULATED (an API server with RBAC + a Job controller playing helm), a REAL control
                      plane started here (--cluster real: kube-apiserver, controllers, etcd, the real helm
                      run by a node agent; upgradectl/local/realcluster), or a REAL cluster from a
                      kubeconfig file (--kubeconfig)

Ctrl-C (SIGINT) or SIGTERM stops everything: HTTP server, running executions and moto, the
simulated cluster, the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from upgradectl.local import options
from upgradectl.local.cluster_modes import StartupError, describe_real_cluster, kubeconfig_path, start_real_cluster
from upgradectl.local.functions import API_FUNCTIONS
from upgradectl.local.options import DEFAULT_CUSTOMERS, DEFAULT_REAL_CUSTOMERS, EXIT_STARTUP_FAILED, parse_args

LOGGER = logging.getLogger("upgrade-local")


class _StopRequested(Exception):
    """Raised in the main thread by the SIGINT/SIGTERM handler."""


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the stack until Ctrl-C/SIGTERM, then exit without the interpreter's finalization.

    Everything was stopped in order by then; what may remain are daemon threads of the Step
    Functions interpreter finishing a task, and CPython can abort (SIGABRT) when such threads touch
    the standard streams while it finalizes. Flushing and leaving with os._exit avoids that."""
    code = _main(argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    options.quiet_logging()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO" if args.verbose else "WARNING")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    signals = _SignalState()
    signals.install()
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            banner = _start(args, stack, began)
            print(banner, flush=True)
            signals.wait()
        except _StopRequested:
            pass
        except StartupError as exc:
            print(f"upgrade-local: error: {exc}", file=sys.stderr, flush=True)
            signals.stopping()
            print("upgrade-local: stopping...", flush=True)
            stack.close()
            return EXIT_STARTUP_FAILED
        signals.stopping()
        print("upgrade-local: stopping (HTTP server, executions, cluster, PostgreSQL)...", flush=True)
        stopped_at = time.monotonic()
    print(f"upgrade-local: stopped cleanly in {time.monotonic() - stopped_at:.1f} s", flush=True)
    _exit_if_threads_hang()
    return 0


class _SignalState:
    """First SIGINT/SIGTERM: stop cleanly. During the stop: say so; a third one forces the exit."""

    def __init__(self) -> None:
        self._stopping = False
        self._extra = 0

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def stopping(self) -> None:
        self._stopping = True

    def wait(self) -> None:
        # Short sleeps, not signal.pause(): a signal the kernel delivers to another thread (the real cluster's
        # helper threads) runs its handler in the main thread only once that thread wakes, and pause() would
        # not wake for it.
        while True:
            time.sleep(0.2)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            self._stopping = True
            raise _StopRequested
        self._extra += 1
        if self._extra >= 2:
            print("upgrade-local: forced exit (embedded PostgreSQL may still run; the next start reuses it)",
                  file=sys.stderr, flush=True)  # fmt: skip
            os._exit(130)
        print("upgrade-local: still stopping; press Ctrl-C again to force", file=sys.stderr, flush=True)


def _start(args: argparse.Namespace, stack: contextlib.ExitStack, began: float) -> str:
    from upgrader import factory
    from upgrader.infra.migrate import apply_migrations

    from upgradectl.local import analysis_stack, demo_images, seed
    from upgradectl.local.postgres import LocalPostgres, PostgresUnavailable
    from upgradectl.local.prometheus import LocalMetrics
    from upgradectl.local.runtime import LocalRuntime
    from upgradectl.local.server import LocalApiServer

    timings: dict[str, float] = {}

    # The port first: when it is taken, say so before starting anything else.
    try:
        server = LocalApiServer(
            (args.host, args.port),
            workers=args.workers,
            access_log=not args.quiet,
            on_worker_exit=lambda: factory.database().close(),
        )
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc} (another upgrade-local? use --port)"
        ) from exc
    stack.callback(server.stop)  # on a failed start; once serving, stopped again (first) further down

    # PostgreSQL
    mark = time.monotonic()
    postgres = LocalPostgres(database_url=args.database_url, data_dir=args.data_dir)
    stack.callback(postgres.stop)
    try:
        database_url = postgres.start()
    except PostgresUnavailable as exc:
        raise StartupError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - pgserver fails in many ways; say which part failed
        raise StartupError(f"the embedded PostgreSQL did not start in {args.data_dir}: {exc}") from exc
    applied = apply_migrations(database_url)
    timings["postgres"] = time.monotonic() - mark
    LOGGER.info("PostgreSQL ready (%s); migrations applied now: %s", postgres.describe(), ", ".join(applied) or "none")

    # Cluster
    mark = time.monotonic()
    real = args.kubeconfig is not None
    extra_env: dict[str, str] = {}
    images: demo_images.DemoImages | None = None
    simulated: Any = None
    real_cluster: Any = None
    kube_token_file: str | None = None
    kube_reader_token_file: str | None = None
    if real:
        path = kubeconfig_path(args.kubeconfig)
        cluster_line = describe_real_cluster(path)
        extra_env.update({"CLUSTER_MODE": "kubeconfig-file", "KUBECONFIG_PATH": str(path)})
        kube_api_url = ""
    elif args.cluster == "real":
        real_cluster = start_real_cluster(args, stack)
        kube_api_url = real_cluster.url
        kube_token_file = str(real_cluster.jobs_token_file)
        kube_reader_token_file = str(real_cluster.reader_token_file)
        extra_env.update(real_cluster.product_env())
        binary = real_cluster.helm_binary
        cluster_line = (
            f"REAL control plane at {real_cluster.url} (kube-apiserver + kube-controller-manager v1.20.2, etcd; "
            f"started in {sum(real_cluster.timings.values()):.1f} s); helm {binary.version} ({binary.path}) runs each "
            f"helm Job as upgrade-system/upgrade-runner on a node agent (the kubelet's stand-in); charts from "
            f"{real_cluster.registry.chart_ref('customer-stack')}; RBAC from k8s/rbac as it is; pods tagged "
            f"{args.never_ready_tag} never get Ready\n"
            f"                  kubeconfig (admin): {real_cluster.admin_kubeconfig}  "
            f"(try: {binary.path} --kubeconfig {real_cluster.admin_kubeconfig} list -A)"
        )
    else:
        from upgradectl.local.cluster import SimulatedCluster

        simulated = SimulatedCluster(job_duration_seconds=args.job_seconds, failure_rate=args.failure_rate,
                                     seed=args.seed, fail_customers=args.fail_customer)  # fmt: skip
        simulated.start()
        stack.callback(simulated.stop)
        kube_api_url = simulated.url
        # The workers act as the product's two identities (RBAC): jobs (start, check, reconcile) and reader.
        kube_token_file = str(simulated.jobs_token_file)
        kube_reader_token_file = str(simulated.reader_token_file)
        # The line keeps its first words ("kmock API server at <url>, helm Jobs finish after ..."): scripts
        # find the simulated cluster's URL there. (The server is our indexed successor of kmock's.)
        cluster_line = (
            f"SIMULATED (no real cluster is touched): kmock API server at {simulated.url}, helm Jobs finish "
            f"after {args.job_seconds:g} s, failure rate {args.failure_rate:.0%}"
            + (f", always failing: {', '.join(args.fail_customer)}" if args.fail_customer else "")
            + f"; RBAC from k8s/rbac enforced (workers use the jobs and reader identities' tokens in "
            f"{kube_token_file}, {kube_reader_token_file})"
        )
    if not real and not args.no_registry:  # the demo images in a real registry (its own, not the chart registry)
        images = demo_images.start_demo_images(stack)  # and the images' pre-flight on, for either demo cluster
        if images is not None:
            extra_env["IMAGE_PREFLIGHT"] = images.preflight
    timings["cluster"] = time.monotonic() - mark

    # Step Functions (moto, executing the real ASL) + worker handlers
    mark = time.monotonic()
    local_metrics = LocalMetrics(factory.database)
    channels, events_line = _event_channels(args, base_hint=f"http://localhost:{server.port}")
    runtime = LocalRuntime(
        database_url=database_url, kube_api_url=kube_api_url, kube_token_file=kube_token_file,
        kube_reader_token_file=kube_reader_token_file, poll_seconds=args.poll_seconds, extra_env=extra_env, sweep_seconds=args.sweep_seconds,
        sync_seconds=args.sync_seconds or None, publish_seconds=0.2, event_channels=channels,
        on_events_sent=local_metrics.observe,
    )  # fmt: skip
    runtime.start()
    server.pages["/metrics"] = local_metrics.render
    stack.callback(runtime.stop, process_exits=True)
    timings["stepfunctions"] = time.monotonic() - mark

    # The fleet: demo customers created in the simulated cluster (an empty inventory), or the inventory's
    # customers given their releases again (a restart); then discovery brings the inventory in line.
    mark = time.monotonic()
    demo: list[Any] = []
    fleet_cluster = simulated if simulated is not None else real_cluster
    if fleet_cluster is not None:
        chart_version = fleet_cluster.charts.get("customer-stack").version  # the newest in the (simulated) registry
        inventory = _inventory(factory.database())
        releases: list[tuple[str, str, dict[str, str], str | None, str | None]] = []
        if not inventory:
            default_count = DEFAULT_CUSTOMERS if simulated is not None else DEFAULT_REAL_CUSTOMERS
            demo = seed.demo_customers(default_count if args.customers is None else args.customers,
                                       blue_green=args.blue_green_customers)  # fmt: skip
            releases += seed.demo_releases(demo, chart_version)
        plain_charts = fleet_cluster.charts.versions("customer-stack")
        for _, namespace, release, versions, chart in inventory:
            if chart and chart not in plain_charts and chart in fleet_cluster.charts.versions(seed.BLUE_GREEN_CHART):
                # a blue-green release (a restart): each component's version back on its blue slot
                releases.append((namespace, release, {f"{c}.slots.blue.tag": v for c, v in versions.items()}, chart,
                                 seed.BLUE_GREEN_CHART))  # fmt: skip
                continue
            releases.append((namespace, release, {f"{c}.image.tag": v for c, v in versions.items()},
                             chart or chart_version, None))  # fmt: skip
        if images is not None:  # every release names the local registry's repositories
            releases = [(n, r, {**images.repository_values(), **values}, v, c) for n, r, values, v, c in releases]
        if real_cluster is not None:
            real_cluster.add_releases(releases)  # the real helm, a few at a time
        else:
            for namespace, release, values, version, chart_name in releases:
                simulated.add_release(namespace, release, values=values, chart_version=version, chart_name=chart_name)
    synced = runtime.sync("local.startup")
    if demo:
        seed.label_demo_customers(factory.database(), demo)
        seed.start_upgrade_ids_at(factory.database())
    count = seed.customer_count(factory.database())
    analysis = analysis_stack.start_analysis(args, simulated, factory.database(), stack) if args.analysis else []
    factory.database().close()  # the main thread's connection; workers keep their own
    timings["discovery"] = time.monotonic() - mark

    # API
    mark = time.monotonic()
    _preload_api_handlers(args.workers)
    server.start()
    stack.callback(server.stop)  # runs first on the way out: no request reaches a stopped runtime
    timings["api"] = time.monotonic() - mark

    host = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::1", "localhost") else args.host  # noqa: S104
    base = f"http://{host}:{server.port}"
    seeded_line = f"{count} in the inventory; {_sync_line(synced)}" + (
        f" ({len(demo)} demo customers created in the {'real' if real_cluster is not None else 'simulated'} cluster: "
        f"{demo[0].customer_id} .. "
        f"{demo[-1].customer_id})"
        if demo
        else ""
    )
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    return "\n".join(
        [
            f"upgrade-local: listening on {base}  (bound to {args.host}:{server.port})",
            f"  API             {base}/api/upgrades  (the spec's paths; identity local:<user>)",
            f"  PostgreSQL      {postgres.describe()}",
            "  Step Functions  moto, executing the real statemachine/upgrade.asl.json; worker handlers in-process"
            f" (JOB_POLL_SECONDS={args.poll_seconds}); reconciler sweep every {args.sweep_seconds:g} s",
            f"  Cluster         {cluster_line}",
            f"  Images          {demo_images.banner_line(images, args)}",
            f"  Customers       {seeded_line}",
            *_blue_green_line(demo),
            *analysis,
            f"  Events          {events_line}; Prometheus metrics at {base}/metrics",
            f"  Started in {time.monotonic() - began:.1f} s ({parts}).",
            f"  Try:  curl -X POST {base}/api/upgrades/deploy -H 'Content-Type: application/json' "
            """-d '{"component":"api","version":"v1.2.0","strategy":"canary","canaryPercent":10}'""",
            f"  Console: {base}/admin/queues  (the rollout dashboard; live, in your browser)",
            f"  API reference: {base}/docs  (every operation, with Try it out against this stack)",
            f"  Stop: Ctrl-C (or kill -TERM {os.getpid()})",
        ]
    )


def _blue_green_line(demo: list[Any]) -> list[str]:
    """A banner line naming the blue-green demo customers, when there are any."""
    ids = [c.customer_id for c in demo if c.chart_name is not None]
    return [f"  Blue-green      {len(ids)} demo customers on charts/customer-stack-bluegreen, labelled rollout=blue-green: "
            f"{ids[0]} .. {ids[-1]}"] if ids else []  # fmt: skip


def _event_channels(args: argparse.Namespace, base_hint: str) -> tuple[list[Any], str]:
    """The channels the local publisher feeds besides the (moto) EventBridge bus, and the banner's words."""
    from upgradectl.local.events import WebhookChannel

    channels: list[Any] = []
    where = ["outbox -> EventBridge bus customer-upgrades-events (moto)"]
    if args.webhook:
        channels.append(WebhookChannel(args.webhook))
        where.append(f"webhook POST {args.webhook}")
    if args.slack_api:
        from upgradectl.local.slack import local_slack_channel

        channels.append(local_slack_channel(args.slack_api, args.slack_channel, base_hint))
        where.append(f"Slack {args.slack_channel} via {args.slack_api}")
    if len(where) == 1:
        where.append("no webhook (--webhook URL sends every event there)")
    return channels, ", ".join(where)


def _inventory(db: Any) -> list[tuple[str, str, str, dict[str, str], str | None]]:
    """The customers that exist (not decommissioned): id, namespace, release, versions, chart version."""
    with db.transaction() as cur:
        cur.execute(
            """
            SELECT c.id, c.namespace, c.release_name, c.chart_version,
                   COALESCE(json_object_agg(v.component, v.version) FILTER (WHERE v.component IS NOT NULL), '{}')
                       AS versions
              FROM customers c LEFT JOIN customer_component_versions v ON v.customer_id = c.id
             WHERE c.status <> 'decommissioned'
             GROUP BY c.id, c.namespace, c.release_name, c.chart_version ORDER BY c.id
            """
        )
        rows = cur.fetchall()
    return [(r["id"], r["namespace"], r["release_name"], dict(r["versions"]), r["chart_version"]) for r in rows]


def _sync_line(synced: dict[str, Any]) -> str:
    counts = synced.get("counts") or {}
    if synced.get("status") != "completed":
        return f"discovery at start-up {synced.get('status')}: {synced.get('error')}"
    return (
        f"discovered at start-up (sync {synced.get('syncId')}): {counts.get('customers', 0)} customers in "
        f"{counts.get('matched', 0)} namespaces, {counts.get('added', 0)} new, {counts.get('drifted', 0)} with drift, "
        f"{counts.get('decommissioned', 0)} decommissioned, {counts.get('problems', 0)} problems"
    )


def _preload_api_handlers(workers: int) -> None:
    """Import every API handler instance now, so the first requests do not pay for it."""
    from upgradectl.local.functions import load_function

    for instance in range(workers):
        for name in API_FUNCTIONS:
            load_function(name, instance)


def _exit_if_threads_hang(grace_seconds: float = 5.0) -> None:
    """Everything was stopped; if a non-daemon thread still runs (a stuck interpreter thread), say which and exit."""
    deadline = time.monotonic() + grace_seconds
    while True:
        alive = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
        if not alive:
            return
        if time.monotonic() > deadline:
            names = ", ".join(t.name for t in alive)
            print(f"upgrade-local: threads still running after stop: {names}; exiting anyway", file=sys.stderr)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(0)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
