"""The deploy's flags (`upgrade-customers [deploy] --component ... --version ... --strategy ...`) and the request
they make: one place for both, shared by the top level, `deploy`, `--dry-run` and `promote`."""

from __future__ import annotations

import argparse
from typing import Any

from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.contract.strategies import described as described_strategies
from upgrader.infra.components import component_names

from upgradectl.analysis_cli import add_analysis_argument, analysis_option


def _percent_steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"steps are comma-separated whole percentages, not {text!r}") from exc
    return steps


def add_deploy_arguments(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--component", choices=component_names(), default=default, help="component to upgrade")
    parser.add_argument("--version", default=default, help="image tag to roll out, e.g. v1.2.0")
    parser.add_argument("--train", action="append", default=default, metavar="COMPONENT=VERSION",
                        help="a release train instead of --component/--version (repeat per component, e.g. --train "
                             "api=v2.0.0 --train dashboard=v2.0.0): one helm upgrade per customer sets them all")  # fmt: skip
    parser.add_argument("--strategy", choices=STRATEGIES.names(), default=default, help=described_strategies())
    parser.add_argument("--progressive", default=default, metavar="P1,P2,..,100", type=_percent_steps,
                        help="progressive with these cumulative percent steps, e.g. 1,5,25,100 (implies it)")  # fmt: skip
    parser.add_argument("--progression", choices=("linear", "exponential"), default=default,
                        help="progressive preset instead of steps: linear (10, 20, .. 100) or exponential "
                             "(1, 2, 4, .. 64, 100)")  # fmt: skip
    parser.add_argument("--step-gate", choices=("manual", "bake"), default=default,
                        help="progressive: after each step wait for `continue` (manual, default) or "
                             "--bake-seconds (bake)")  # fmt: skip
    parser.add_argument("--canary-percent", type=int, default=default, metavar="N",
                        help="canary: percent of customers in the first wave (server default 10)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=default, metavar="N",
                        help="batch: customers per batch (server default 10)")  # fmt: skip
    parser.add_argument("--customer", action="append", dest="customer_ids", default=default, metavar="ID",
                        help="only this customer (repeatable); default: every active customer")  # fmt: skip
    parser.add_argument("--max-concurrency", type=int, default=default, metavar="N",
                        help="helm upgrades running at once within a wave")  # fmt: skip
    parser.add_argument("--failure-threshold", default=default, metavar="N|P%",
                        help="failed customers a wave tolerates before the upgrade halts: a count (2) or a "
                             "percentage (10%%); default none, and never in the canary wave")  # fmt: skip
    parser.add_argument("--auto-rollback", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="roll a customer back automatically when its upgrade or health check fails")  # fmt: skip
    parser.add_argument("--bake-seconds", type=int, default=default, metavar="S",
                        help="wait between two waves")  # fmt: skip
    parser.add_argument("--health-path", default=default, metavar="PATH",
                        help="also probe this HTTP path (e.g. /healthz) through the service proxy")  # fmt: skip
    parser.add_argument("--health-timeout", type=int, default=default, metavar="S",
                        help="seconds the rollout may take after helm (default 300)")  # fmt: skip
    parser.add_argument("--no-health-check", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="skip the post-upgrade rollout check")  # fmt: skip
    parser.add_argument(
        "--chart-version",
        default=default,
        metavar="X.Y.Z",
        help="pin this chart version for every customer (default: each keeps the one it runs)",
    )
    parser.add_argument("--wait", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="watch the progress after starting (stops at the canary gate)")  # fmt: skip
    parser.add_argument("--include-pinned", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="also upgrade customers whose component is pinned to another version")  # fmt: skip
    parser.add_argument("--ignore-windows", dest="respect_windows", action="store_const", const=False,
                        default=default, help="start customers whatever their maintenance windows say")  # fmt: skip
    parser.add_argument("--respect-windows", dest="respect_windows", action="store_const", const=True,
                        default=default, help="start each customer only inside its maintenance window (default when "
                                              "a targeted customer has one)")  # fmt: skip
    parser.add_argument("--window-deadline", default=default, metavar="TIME",
                        help="RFC 3339: customers whose window does not open by then are skipped (default 14 days)")  # fmt: skip
    parser.add_argument("--expected-minutes", type=int, default=default, metavar="M",
                        help="how long one customer's upgrade takes; it must fit before the window closes (default 15)")  # fmt: skip
    parser.add_argument("--skip-incompatible", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="leave out (skipped, the rule as the reason) the customers the version would break a "
                             "compatibility rule for; default: the deploy is refused listing them")  # fmt: skip
    parser.add_argument("--blue-green", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="blue-green per customer: the version onto the idle slot, switch once it is healthy; a "
                             "rollback switches back at once (the releases must follow docs/blue-green.md)")  # fmt: skip
    parser.add_argument("--finalize-old-slot", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="with --blue-green: once switched, remove the previous slot (a rollback is then no "
                             "longer an instant switch back)")  # fmt: skip
    parser.add_argument("--ring", action="append", dest="rings", default=default, metavar="RING",
                        help="only customers of this ring (repeatable; `fleet` lists the rings); default: every ring")  # fmt: skip
    parser.add_argument("--force-reason", default=default, metavar="TEXT",
                        help="start even where the component's promotion rule refuses, for this reason (recorded "
                             "and shown with the upgrade)")  # fmt: skip
    add_analysis_argument(parser, default)
    parser.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print the plan (waves, customers, who is left out and why); start nothing")  # fmt: skip
    parser.add_argument("--idempotency-key", default=default, metavar="KEY",
                        help="the deploy's Idempotency-Key (default: a new one per run; a retry after a timeout "
                             "reuses it, so it never starts a second upgrade)")  # fmt: skip


def deploy_request(args: argparse.Namespace) -> dict[str, Any]:
    """The deploy request the flags describe (only the fields given); ValueError for a flag the API would
    not understand."""
    request: dict[str, Any] = {"strategy": args.strategy}
    train = getattr(args, "train", None)
    if train:
        request["components"] = train_flags(train)
    else:
        request.update(component=args.component, version=args.version)
    for flag, field in (("canary_percent", "canaryPercent"), ("batch_size", "batchSize")):
        if getattr(args, flag) is not None:
            request[field] = getattr(args, flag)
    for flag, field in (("progressive", "steps"), ("progression", "progression"), ("step_gate", "stepGate")):
        if getattr(args, flag, None):
            request[field] = getattr(args, flag)
    if getattr(args, "customer_ids", None):
        request["customerIds"] = args.customer_ids
    if getattr(args, "max_concurrency", None) is not None:
        request["maxConcurrency"] = args.max_concurrency
    if getattr(args, "chart_version", None):
        request["chartVersion"] = args.chart_version
    if getattr(args, "include_pinned", False):
        request["includePinned"] = True
    if getattr(args, "skip_incompatible", False):
        request["skipIncompatible"] = True
    if getattr(args, "blue_green", False):
        request["blueGreen"] = True
    if getattr(args, "finalize_old_slot", False):
        request["finalizeOldSlot"] = True
    for flag, field in (("respect_windows", "respectWindows"), ("window_deadline", "windowDeadline"),
                        ("expected_minutes", "expectedDurationMinutes")):  # fmt: skip
        if getattr(args, flag, None) is not None:
            request[field] = getattr(args, flag)
    if getattr(args, "rings", None):
        request["rings"] = args.rings
    if getattr(args, "force_reason", None):
        request["force"] = True
        request["forceReason"] = args.force_reason
    request.update(safety_options(args) | analysis_option(getattr(args, "analysis", None)))
    return request


def train_flags(pairs: list[str]) -> dict[str, str]:
    """`--train api=v2.0.0 --train dashboard=v2.0.0` as the request's `components`; ValueError for a pair that is
    not COMPONENT=VERSION or a component given twice (the API checks the names and versions)."""
    found: dict[str, str] = {}
    for pair in pairs:
        component, sign, version = pair.partition("=")
        if not sign or not component or not version:
            raise ValueError(f"--train takes COMPONENT=VERSION, e.g. api=v2.0.0, not {pair!r}")
        if component in found:
            raise ValueError(f"--train names {component} twice")
        found[component] = version
    return found


def safety_options(args: argparse.Namespace) -> dict[str, Any]:
    """The deploy request's safety fields from the flags (only those given)."""
    options: dict[str, Any] = {}
    threshold = getattr(args, "failure_threshold", None)
    if threshold:
        text = str(threshold).strip()
        try:
            options["failureThreshold"] = {"percent": float(text[:-1])} if text.endswith("%") else {"count": int(text)}
        except ValueError:
            raise ValueError(f"--failure-threshold takes a count (2) or a percentage (10%), not {text!r}") from None
    if getattr(args, "auto_rollback", False):
        options["autoRollback"] = True
    if getattr(args, "bake_seconds", None) is not None:
        options["bakeSeconds"] = args.bake_seconds
    health: dict[str, Any] = {}
    if getattr(args, "no_health_check", False):
        health["enabled"] = False
    if getattr(args, "health_path", None):
        health["httpPath"] = args.health_path
    if getattr(args, "health_timeout", None) is not None:
        health["timeoutSeconds"] = args.health_timeout
    if health:
        options["healthCheck"] = health
    return options
