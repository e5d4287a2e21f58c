"""The local stack's flags (`upgrade-local --help`): what they mean, their defaults and which combinations are
refused."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from upgradectl.local.functions import ROOT
from upgradectl.local.prometheus_server import find_binary

DEFAULT_PORT = 3100
DEFAULT_CUSTOMERS = 50
DEFAULT_REAL_CUSTOMERS = 10  # --cluster real: each demo release is a real `helm install --wait` (about 2 s)
EXIT_STARTUP_FAILED = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="upgrade-local",
        description="Run the customer-upgrade system locally: API at http://localhost:3100, the real state machine "
        "on moto, PostgreSQL, and a simulated (default) or real Kubernetes cluster.",
    )
    parser.add_argument("--host", default=os.environ.get("UPGRADE_LOCAL_HOST", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1)")  # fmt: skip
    parser.add_argument("--port", type=int, default=int(os.environ.get("UPGRADE_LOCAL_PORT", DEFAULT_PORT)),
                        help=f"port to listen on (default {DEFAULT_PORT})")  # fmt: skip
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None,
                        help="PostgreSQL to use (default: $DATABASE_URL, else an embedded server)")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".local" / "pgdata",
                        help="data folder of the embedded PostgreSQL (default .local/pgdata)")  # fmt: skip
    parser.add_argument("--customers", type=int, default=None,
                        help=f"demo customers (namespaces and Helm releases) to create when the "
                             f"inventory is empty (default {DEFAULT_CUSTOMERS}, {DEFAULT_REAL_CUSTOMERS} with --cluster real); discovery then "
                             "finds them")  # fmt: skip
    parser.add_argument("--blue-green-customers", type=int, default=0, metavar="N",
                        help="simulated cluster: N more demo customers whose releases run the blue-green sample chart "
                             "(charts/customer-stack-bluegreen), labelled rollout=blue-green (default 0)")  # fmt: skip
    parser.add_argument("--kubeconfig", nargs="?", const="", default=None, metavar="PATH",
                        help="use the REAL cluster of this kubeconfig file's current context (no PATH: $KUBECONFIG "
                             "or ~/.kube/config). Default: a simulated cluster")  # fmt: skip
    parser.add_argument("--cluster", choices=("simulated", "real"), default="simulated",
                        help="simulated (default): the simulated cluster; real: a real Kubernetes control plane started "
                             "here (kube-apiserver + controller-manager v1.20.2, etcd; built once by "
                             "scripts/realk8s/build-control-plane.sh) with the real helm run by a node agent")  # fmt: skip
    parser.add_argument("--helm", choices=("3", "4"), default="3",
                        help="--cluster real: the helm the Jobs run, 3 (3.17.2) or 4 (4.1.4) (default 3)")  # fmt: skip
    parser.add_argument("--never-ready-tag", default="*-broken", metavar="PATTERN",
                        help="--cluster real: pods whose image tag matches never get Ready, so helm --wait fails for "
                             "real (default *-broken)")  # fmt: skip
    parser.add_argument("--no-registry", action="store_true",
                        help="simulated cluster and --cluster real: no local image registry (docker-registry + skopeo); the demo releases "
                             "name registry.example.com and the images' pre-flight is off (IMAGE_PREFLIGHT=off)")  # fmt: skip
    parser.add_argument("--job-seconds", type=float, default=2.0,
                        help="simulated cluster: how long a helm Job runs (default 2)")  # fmt: skip
    parser.add_argument("--failure-rate", type=float, default=0.0,
                        help="simulated cluster: share of helm Jobs that fail, 0..1 (default 0)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="simulated cluster: random seed of the failures")
    parser.add_argument("--fail-customer", action="append", default=[], metavar="ID",
                        help="simulated cluster: every helm Job of this customer fails (repeatable)")  # fmt: skip
    parser.add_argument("--poll-seconds", type=int, default=1,
                        help="seconds between two looks at a running helm Job (JOB_POLL_SECONDS, default 1)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=4, help="HTTP worker threads (default 4)")
    parser.add_argument("--sweep-seconds", type=float, default=10.0,
                        help="how often the reconciler sweeps for runs whose execution ended (default 10; 0: never)")  # fmt: skip
    parser.add_argument("--sync-seconds", type=float, default=60.0,
                        help="how often the inventory is synced with the cluster (default 60; 0: only at start-up "
                             "and on POST /api/customers/sync)")  # fmt: skip
    parser.add_argument("--webhook", metavar="URL", default=None,
                        help="POST every lifecycle event there as JSON (EventBridge's event shape), in order, "
                             "retried with backoff until taken (2xx)")  # fmt: skip
    parser.add_argument("--slack-api", metavar="URL", default=None,
                        help="Slack Web API base URL for the team notifications (a local stand-in: "
                             "python -m upgradectl.local.slack_standin); token from $SLACK_BOT_TOKEN")  # fmt: skip
    parser.add_argument("--slack-channel", default="#upgrades", help="Slack channel of the notifications")
    parser.add_argument("--analysis", action="store_true",
                        help="simulated cluster: the customers' workloads expose request, error and latency metrics on "
                             "127.0.0.1 and a real Prometheus (Debian's package) scrapes them (metric analysis)")  # fmt: skip
    parser.add_argument("--bad-version", action="append", default=None, metavar="PATTERN",
                        help="--analysis: versions matching this pattern (fnmatch) raise their customers' error rate "
                             "from 0.5 %% to 3 %% (repeatable; default *-bad)")  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="show the handlers' own (JSON) logs")
    parser.add_argument("--quiet", action="store_true", help="no access log lines")
    args = parser.parse_args(argv)
    if not 0.0 <= args.failure_rate <= 1.0:
        parser.error("--failure-rate must be between 0 and 1")
    if args.customers is not None and args.customers < 0:
        parser.error("--customers must be 0 or more")
    if args.blue_green_customers < 0:
        parser.error("--blue-green-customers must be 0 or more")
    if args.cluster == "real" and args.kubeconfig is not None:
        parser.error("--cluster real starts its own control plane; --kubeconfig uses an existing cluster: choose one")
    if args.blue_green_customers and args.kubeconfig is not None:
        parser.error("--blue-green-customers creates demo customers in the simulated cluster, not with --kubeconfig")
    if args.customers and args.kubeconfig is not None:
        parser.error("--customers creates demo customers in the simulated cluster; with --kubeconfig the customers "
                     "are the real cluster's, found by discovery")  # fmt: skip
    args.bad_version = args.bad_version or ["*-bad"]
    if args.analysis and (args.cluster == "real" or args.kubeconfig is not None):
        parser.error("--analysis reads the versions the simulated cluster runs: it needs the simulated cluster")
    if args.analysis and find_binary() is None:
        parser.error("--analysis starts a real Prometheus: apt-get install -y prometheus")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0..65535")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    for flag, url in (("--webhook", args.webhook), ("--slack-api", args.slack_api)):
        if url is not None and not (urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc):
            parser.error(f"{flag} must be an http:// or https:// URL, got {url!r}")
    return args


def quiet_logging() -> None:
    """The stack's own lines at INFO; the libraries' only from WARNING (a quiet start: the banner, not noise)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("botocore", "boto3", "urllib3", "moto", "kubernetes", "aiohttp", "pgserver", "responses"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    # moto says at start-up that it does not enforce the Map's ToleratedFailurePercentage. Ours is 100 (a
    # customer's failure never fails the Map) and every child catches its own errors into its failure-recording
    # state (tests/unit/test_asl_static.py), so enforcing it would change nothing.
    logging.getLogger("moto.stepfunctions.parser.asl.parse.preprocessor").setLevel(logging.ERROR)
