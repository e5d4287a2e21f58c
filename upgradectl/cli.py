"""`upgrade-customers`: the operator CLI (the spec's upgrade-customers.ps1, plus watch/logs/continue/rollback).

    upgrade-customers --component api --version v1.2.0 --strategy canary --canary-percent 10
    upgrade-customers watch 123
    upgrade-customers logs 123 --status failed
    upgrade-customers continue 123
    upgrade-customers rollback 123 cust_abc123
    upgrade-customers --component api --version v1.2.0 --strategy all --dry-run
    upgrade-customers customers list --component api --version v1.1.0
    upgrade-customers fleet

Targets the local stack (http://localhost:3100) unless --api-url / UPGRADE_API_URL names another
API; requests to an AWS endpoint are signed with SigV4 (standard credential chain).

Exit codes: 0 success (or a canary waiting for continue), 1 API/connection error, 2 usage error,
3 the upgrade (or rollback) ended with failures, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.contract.strategies import described as described_strategies
from upgrader.infra.components import component_names

from upgradectl import fleet_cli
from upgradectl.analysis_cli import add_analysis_argument, analysis_option
from upgradectl.client import DEFAULT_API_URL, ApiClientError, ApiError, ApiUnreachable, UpgradeApi
from upgradectl.console import command as console_command

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FAILURES = 3
EXIT_INTERRUPTED = 130
DEPLOY_ATTEMPTS = 3

FINAL_STATUSES = frozenset({"completed", "completed_with_failures", "failed", "halted", "aborted", "cancelled"})
FAILED_STATUSES = FINAL_STATUSES - {"completed"}


# --- argument parsing ------------------------------------------------------------------------------


def _percent_steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"steps are comma-separated whole percentages, not {text!r}") from exc
    return steps


def _add_deploy_arguments(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--component", choices=component_names(), default=default, help="component to upgrade")
    parser.add_argument("--version", default=default, help="image tag to roll out, e.g. v1.2.0")
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
    add_analysis_argument(parser, default)
    parser.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print the plan (waves, customers, who is left out and why); start nothing")  # fmt: skip
    parser.add_argument("--idempotency-key", default=default, metavar="KEY",
                        help="the deploy's Idempotency-Key (default: a new one per run; a retry after a timeout "
                             "reuses it, so it never starts a second upgrade)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the API's JSON responses as they are")  # fmt: skip

    parser = argparse.ArgumentParser(
        prog="upgrade-customers",
        description="Roll a component version out to every customer instance, and watch, continue or roll back "
        "an upgrade. Without a subcommand, the --component/--version/--strategy flags start an upgrade "
        "(like upgrade-customers.ps1).",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 API or connection error, 2 usage, 3 upgrade ended with failures, 130 interrupted.",
    )
    parser.add_argument("--api-url", default=os.environ.get("UPGRADE_API_URL", DEFAULT_API_URL),
                        help=f"the upgrade API (default $UPGRADE_API_URL or {DEFAULT_API_URL}); an "
                             "https://<id>.execute-api.<region>.amazonaws.com/<stage> URL is signed with SigV4")  # fmt: skip
    signing = parser.add_mutually_exclusive_group()
    signing.add_argument("--sign", dest="sign", action="store_const", const=True, default=None,
                         help="sign requests with SigV4 (default: only for *.amazonaws.com)")  # fmt: skip
    signing.add_argument("--no-sign", dest="sign", action="store_const", const=False, help="never sign")
    parser.add_argument("--region", default=None, help="SigV4 region (default: from the URL, then $AWS_REGION)")
    parser.add_argument("--profile", default=None, help="AWS profile for SigV4 credentials (default chain)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    _add_deploy_arguments(parser, suppress=False)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    deploy = commands.add_parser("deploy", parents=[common], help="start an upgrade (same flags as the top level)")
    _add_deploy_arguments(deploy, suppress=True)

    listing = commands.add_parser("list", parents=[common], help="recent upgrades, newest first")
    listing.add_argument("--component", choices=component_names(), dest="filter_component", default=None)
    listing.add_argument("--status", default=None, help="only upgrades in this status")
    listing.add_argument("--limit", type=int, default=20)

    status = commands.add_parser("status", parents=[common], help="progress of one upgrade")
    status.add_argument("upgrade_id")
    status.add_argument("--watch", action="store_true", help="keep watching (same as the watch command)")
    status.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)

    watch = commands.add_parser("watch", parents=[common], help="live progress bar until the upgrade ends or waits")
    watch.add_argument("upgrade_id")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between two looks (default 1)")
    watch.add_argument("--through-gate", action="store_true",
                       help="keep watching while a canary waits for continue (default: stop there)")  # fmt: skip

    logs = commands.add_parser("logs", parents=[common], help="per-customer attempts of one upgrade")
    logs.add_argument("upgrade_id")
    logs.add_argument("--status", choices=("pending", "in_progress", "completed", "failed", "skipped", "rolled_back"))
    logs.add_argument("--customer", dest="customer_id", default=None, help="only this customer")
    logs.add_argument("--operation", choices=("upgrade", "rollback"), default=None)
    logs.add_argument("--full", action="store_true", help="print the whole helm output of every entry")

    cont = commands.add_parser("continue", parents=[common], help="release the canary gate: upgrade the rest")
    cont.add_argument("upgrade_id")
    cont.add_argument("--wait", action="store_true", help="watch the progress until the upgrade ends")

    rollback = commands.add_parser(
        "rollback",
        parents=[common],
        help="roll one customer (or, with --all, every customer) back to its previous version",
    )
    rollback.add_argument("upgrade_id")
    rollback.add_argument("customer_id", nargs="?", default=None)
    rollback.add_argument("--all", action="store_true", help="every customer the upgrade changed, last wave first")
    rollback.add_argument("--max-concurrency", type=int, default=None, metavar="N", help="with --all: at once")
    rollback.add_argument("--wait", action="store_true", help="wait until the helm rollback Job(s) have finished")
    rollback.add_argument("--force", action="store_true",
                          help="roll back even where the version restored would break a compatibility rule")  # fmt: skip

    resume = commands.add_parser(
        "resume", parents=[common], help="go on with a halted, aborted or failed upgrade (the customers not yet done)"
    )
    resume.add_argument("upgrade_id")
    resume.add_argument("--retry-failed", action="store_true",
                        help="also retry customers that failed without their release being changed")  # fmt: skip
    resume.add_argument("--max-concurrency", type=int, default=None, metavar="N")
    resume.add_argument("--failure-threshold", default=None, metavar="N|P%")
    resume.add_argument("--bake-seconds", type=int, default=None, metavar="S")
    resume.add_argument("--wait", action="store_true", help="watch the progress until the upgrade ends or waits")

    abort = commands.add_parser("abort", parents=[common], help="stop an upgrade: no further customer starts")
    abort.add_argument("upgrade_id")
    abort.add_argument("--rollback", action="store_true", help="then roll back the customers it upgraded")
    abort.add_argument("--reason", default=None, help="why (recorded with who asked)")
    abort.add_argument("--wait", action="store_true", help="watch until the upgrade has stopped")

    fleet_cli.add_parsers(commands, common)
    console_command.add_parser(commands, common)
    return parser


# --- commands --------------------------------------------------------------------------------------


class Cli:
    def __init__(self, api: UpgradeApi, *, out: TextIO, err: TextIO, as_json: bool,
                 sleep: Callable[[float], None] | None = None) -> None:  # fmt: skip
        self.api = api
        self.out = out
        self.err = err
        self.as_json = as_json
        self.sleep = sleep or time.sleep  # looked up now: tests replace time.sleep

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def dump(self, payload: Any) -> None:
        print(json.dumps(payload, indent=2), file=self.out, flush=True)

    # deploy
    def deploy(self, args: argparse.Namespace) -> int:
        if getattr(args, "progressive", None) or getattr(args, "progression", None):
            args.strategy = args.strategy or "progressive"
        missing = [flag for flag, value in (("--component", args.component), ("--version", args.version),
                                            ("--strategy", args.strategy)) if not value]  # fmt: skip
        if missing:
            print(f"upgrade-customers: error: starting an upgrade needs {', '.join(missing)} "
                  "(or give a command: list, status, watch, logs, continue, rollback, customers, fleet)", file=self.err)  # fmt: skip
            return EXIT_USAGE
        request: dict[str, Any] = {"component": args.component, "version": args.version, "strategy": args.strategy}
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
        try:
            request.update(_safety_options(args) | analysis_option(getattr(args, "analysis", None)))
        except ValueError as exc:
            print(f"upgrade-customers: error: {exc}", file=self.err)
            return EXIT_USAGE
        if getattr(args, "dry_run", False):
            plan = self.api.plan(request)
            if self.as_json:
                self.dump(plan)
            else:
                self.say(fleet_cli.plan_text(plan))
            return EXIT_OK
        started = self._deploy_once(request, getattr(args, "idempotency_key", None) or str(uuid.uuid4()))
        if self.as_json:
            self.dump(started)
        else:
            uid = started["upgradeId"]
            self.say(started.get("message", "upgrade started"))
            waves = ", ".join(str(w) for w in started.get("waves", []))
            self.say(f"  upgrade id {uid}   job {started.get('jobId')}   waves {waves or '-'}")
            self.say(f"  watch:    upgrade-customers watch {uid}")
            hint = STRATEGIES.get(args.strategy).continue_hint(request.get("stepGate"))
            if hint:
                self.say(f"  continue: upgrade-customers continue {uid}   ({hint})")
        if getattr(args, "wait", False):
            return self.watch(str(started["upgradeId"]), interval=1.0, through_gate=False)
        return EXIT_OK

    def _deploy_once(self, request: dict[str, Any], key: str) -> dict[str, Any]:
        """POST the deploy; when no answer came (timeout, 502/503/504), send it again with the same key: the
        API answers the first request's result, never a second upgrade."""
        for attempt in range(DEPLOY_ATTEMPTS):
            try:
                return self.api.deploy(request, idempotency_key=key)
            except ApiUnreachable:
                if attempt == DEPLOY_ATTEMPTS - 1:
                    raise
            except ApiError as exc:
                if exc.status not in (502, 503, 504) or attempt == DEPLOY_ATTEMPTS - 1:
                    raise
            print(f"upgrade-customers: no answer yet; asking again with Idempotency-Key {key}", file=self.err)
            self.sleep(2.0 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    # list
    def list(self, args: argparse.Namespace) -> int:
        data = self.api.list_upgrades(component=args.filter_component, status=args.status, limit=args.limit)
        if self.as_json:
            self.dump(data)
            return EXIT_OK
        rows = data.get("upgrades", [])
        if not rows:
            self.say("no upgrades yet")
            return EXIT_OK
        self.say(f"{'ID':>6}  {'COMPONENT':<10} {'VERSION':<14} {'STRATEGY':<8} {'STATUS':<24} "
                 f"{'DONE':>9} {'FAILED':>6}  CREATED")  # fmt: skip
        for row in rows:
            done = f"{row['completed']}/{row['total']}"
            self.say(f"{row['upgradeId']:>6}  {row['component']:<10} {row['version']:<14} {row['strategy']:<8} "
                     f"{row['status']:<24} {done:>9} {row['failed']:>6}  {row['createdAt']}")  # fmt: skip
        return EXIT_OK

    # status
    def status(self, args: argparse.Namespace) -> int:
        if args.watch:
            return self.watch(args.upgrade_id, interval=args.interval, through_gate=False)
        data = self.api.status(args.upgrade_id)
        if self.as_json:
            self.dump(data)
        else:
            self.say(_status_lines(data))
        return EXIT_FAILURES if data.get("status") in FAILED_STATUSES else EXIT_OK

    # watch
    def watch(self, upgrade_id: str, *, interval: float, through_gate: bool) -> int:
        live = _is_tty(self.out) and not self.as_json
        last = ""
        while True:
            data = self.api.status(upgrade_id)
            state = data.get("status", "")
            if self.as_json:
                line = json.dumps({k: data.get(k) for k in ("upgradeId", "status", "total", "completed", "failed",
                                                            "inProgress", "pending", "skipped")})  # fmt: skip
            else:
                line = progress_line(data, unicode=_unicode_ok(self.out))
            if live:
                print("\r" + line + "\x1b[K", end="", file=self.out, flush=True)
            elif line != last:
                print(line, file=self.out, flush=True)
            last = line
            gate = state == "awaiting_continue" and not through_gate
            if state in FINAL_STATUSES or gate:
                if live:
                    print(file=self.out, flush=True)
                return self._watch_outcome(data)
            self.sleep(interval)

    def _watch_outcome(self, data: dict[str, Any]) -> int:
        state, uid = data.get("status"), data.get("upgradeId")
        if self.as_json:
            return EXIT_FAILURES if state in FAILED_STATUSES else EXIT_OK
        if state == "awaiting_continue":
            self.say(f"Canary wave done ({data.get('completed')} completed, {data.get('failed')} failed). "
                     f"Check those customers, then: upgrade-customers continue {uid}")  # fmt: skip
            return EXIT_OK
        if state == "completed":
            self.say(f"Upgrade {uid} completed: {data.get('completed')} of {data.get('total')} customers upgraded.")
            return EXIT_OK
        reason = f" ({data['haltReason']})" if data.get("haltReason") else ""
        self.say(f"Upgrade {uid} ended {state}{reason}: {data.get('completed')} completed, {data.get('failed')} "
                 f"failed, {data.get('skipped', 0)} skipped. See: upgrade-customers logs {uid} --status failed")  # fmt: skip
        return EXIT_FAILURES

    # logs
    def logs(self, args: argparse.Namespace) -> int:
        data = self.api.all_logs(args.upgrade_id, status=args.status, customerId=args.customer_id,
                                 operation=args.operation)  # fmt: skip
        if self.as_json:
            self.dump(data)
            return EXIT_OK
        entries = data.get("logs", [])
        if not entries:
            self.say("no log entries match")
            return EXIT_OK
        self.say(f"{'ID':>5}  {'CUSTOMER':<16} {'OP':<8} {'WAVE':>4}  {'STATUS':<12} {'FROM → TO':<22} "
                 f"{'SECONDS':>7}  DETAIL")  # fmt: skip
        for entry in entries:
            versions = f"{entry.get('from_version') or '-'} → {entry.get('to_version') or '-'}"
            detail = entry.get("error") or _last_line(entry.get("output")) or ""
            self.say(f"{entry['id']:>5}  {entry['customer_id']:<16} {entry.get('operation', 'upgrade'):<8} "
                     f"{entry.get('wave', 0):>4}  {entry['status']:<12} {versions:<22} "
                     f"{_duration(entry):>7}  {detail[:100]}")  # fmt: skip
            if args.full and (entry.get("output") or entry.get("error")):
                for text in (entry.get("output"), entry.get("error")):
                    for line in (text or "").rstrip().splitlines():
                        self.say(f"         | {line}")
        self.say(f"{len(entries)} of {data.get('total', len(entries))} entries")
        return EXIT_OK

    # continue
    def continue_(self, args: argparse.Namespace) -> int:
        data = self.api.continue_upgrade(args.upgrade_id)
        if self.as_json:
            self.dump(data)
        else:
            self.say(f"{data.get('message', 'continued')} (upgrade {data.get('upgradeId')}, job {data.get('jobId')})")
        if args.wait:
            return self.watch(args.upgrade_id, interval=1.0, through_gate=True)
        return EXIT_OK

    # resume
    def resume(self, args: argparse.Namespace) -> int:
        options: dict[str, Any] = {}
        if args.retry_failed:
            options["retryFailed"] = True
        if args.max_concurrency is not None:
            options["maxConcurrency"] = args.max_concurrency
        try:
            options.update(_safety_options(args))
        except ValueError as exc:
            print(f"upgrade-customers: error: {exc}", file=self.err)
            return EXIT_USAGE
        data = self.api.resume(args.upgrade_id, options)
        if self.as_json:
            self.dump(data)
        else:
            self.say(f"{data.get('message', 'resumed')} (upgrade {data.get('upgradeId')}, job {data.get('jobId')})")
        if args.wait:
            return self.watch(args.upgrade_id, interval=1.0, through_gate=False)
        return EXIT_OK

    # abort
    def abort(self, args: argparse.Namespace) -> int:
        data = self.api.abort(args.upgrade_id, rollback=args.rollback, reason=args.reason)
        if self.as_json:
            self.dump(data)
        else:
            self.say(f"{data.get('message', 'abort requested')} (upgrade {data.get('upgradeId')})")
        if args.wait:
            return self.watch(args.upgrade_id, interval=1.0, through_gate=True)
        return EXIT_OK

    # rollback
    def rollback(self, args: argparse.Namespace) -> int:
        if args.all == bool(args.customer_id):
            print("upgrade-customers: error: rollback takes a customer id, or --all (not both)", file=self.err)
            return EXIT_USAGE
        if args.all:
            return self._rollback_all(args)
        data = self.api.rollback(args.upgrade_id, args.customer_id, force=args.force)
        if self.as_json:
            self.dump(data)
        else:
            self.say(f"{data.get('message', 'rollback started')}: customer {data.get('customerId')} in namespace "
                     f"{data.get('namespace')} to {data.get('toVersion') or 'its previous version'} "
                     f"(job {data.get('jobId')})")  # fmt: skip
        if not args.wait:
            return EXIT_OK
        rollback_id = data.get("rollbackId")
        while True:
            page = self.api.logs(args.upgrade_id, operation="rollback", customerId=args.customer_id)
            row = next((e for e in page.get("logs", []) if e.get("id") == rollback_id), None)
            if row is not None and row["status"] not in ("pending", "in_progress"):
                ok = row["status"] == "completed"
                if not self.as_json:
                    self.say(f"rollback {row['status']}: {row.get('error') or _last_line(row.get('output')) or ''}")
                return EXIT_OK if ok else EXIT_FAILURES
            self.sleep(1.0)

    def _rollback_all(self, args: argparse.Namespace) -> int:
        data = self.api.rollback_upgrade(args.upgrade_id, max_concurrency=args.max_concurrency, force=args.force)
        if self.as_json:
            self.dump(data)
        else:
            waves = ", ".join(str(w) for w in data.get("waves", []))
            self.say(f"{data.get('message', 'rollback started')} (job {data.get('jobId')}, waves {waves})")
        if not args.wait:
            return EXIT_OK
        while True:
            status = self.api.status(args.upgrade_id)
            if status.get("status") in ("rolled_back", "rollback_incomplete"):
                if not self.as_json:
                    self.say(
                        f"upgrade {args.upgrade_id}: {status['status']} ({status.get('rolledBack', 0)} rolled back)"
                    )
                return EXIT_OK if status["status"] == "rolled_back" else EXIT_FAILURES
            self.sleep(1.0)


def _safety_options(args: argparse.Namespace) -> dict[str, Any]:
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


# --- rendering -------------------------------------------------------------------------------------


def progress_line(data: dict[str, Any], *, unicode: bool = True, width: int = 30) -> str:
    """`[█████░░░]  12/50  completed 10  failed 2  in progress 3  pending 35  in_progress`"""
    total = max(int(data.get("total") or 0), 0)
    completed = int(data.get("completed") or 0)
    failed = int(data.get("failed") or 0)
    skipped = int(data.get("skipped") or 0)
    done = completed + failed + skipped
    full, partial_fail, empty = ("█", "▓", "░") if unicode else ("#", "x", "-")
    if total:
        ok_cells = round(width * completed / total)
        bad_cells = min(width - ok_cells, round(width * (failed + skipped) / total))
    else:
        ok_cells = bad_cells = 0
    bar = full * ok_cells + partial_fail * bad_cells + empty * (width - ok_cells - bad_cells)
    wave = ""
    if data.get("totalWaves") and data.get("currentWave") is not None:
        wave = f"  wave {int(data['currentWave']) + 1}/{data['totalWaves']}"
    return (
        f"[{bar}] {done:>4}/{total:<4} completed {completed}  failed {failed}  in progress "
        f"{data.get('inProgress', 0)}  pending {data.get('pending', 0)}"
        + (f"  skipped {skipped}" if skipped else "")
        + f"  {data.get('status', '')}{wave}"
    )


def _status_lines(data: dict[str, Any]) -> str:
    lines = [
        f"upgrade {data.get('upgradeId')}: {data.get('component')} {data.get('fromVersion') or '?'} → "
        f"{data.get('version')} ({data.get('strategy')})  status {data.get('status')}",
        f"  total {data.get('total')}  completed {data.get('completed')}  failed {data.get('failed')}  "
        f"in progress {data.get('inProgress')}  pending {data.get('pending', 0)}  skipped {data.get('skipped', 0)}  "
        f"rolled back {data.get('rolledBack', 0)}",
        f"  started {data.get('startedAt') or '-'}  completed {data.get('completedAt') or '-'}  "
        f"by {data.get('requestedBy') or '-'}",
    ]
    if data.get("chartVersion"):
        lines.append(f"  chart {data['chartVersion']} (pinned for every customer)")
    if data.get("waitingForLease"):
        lines.append(f"  {data['waitingForLease']} waiting their turn: another operation holds their release")
    windows = data.get("waitingForWindow") or []
    if windows:
        lines.append(f"  {len(windows)} waiting for their maintenance window: " + ", ".join(
            f"{w['customerId']} at {w['nextOpening']}" for w in windows[:5]) + (" …" if len(windows) > 5 else ""))  # fmt: skip
    if data.get("gate") == "bake" and data.get("gateUntil"):
        lines.append(f"  baking until {data['gateUntil']}")
    if data.get("haltReason"):
        lines.append(f"  halted: {data['haltReason']}")
    attempts = data.get("attempts") or []
    if len(attempts) > 1:
        lines.append("  attempts: " + ", ".join(f"{a['attempt']} {a['status']}" for a in attempts))
    if data.get("status") in ("halted", "aborted", "failed"):
        lines.append(f"  go on with:  upgrade-customers resume {data.get('upgradeId')}")
    if data.get("status") == "awaiting_continue":
        lines.append(f"  waiting for: upgrade-customers continue {data.get('upgradeId')}")
    return "\n".join(lines)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def _duration(entry: dict[str, Any]) -> str:
    from datetime import datetime

    start, end = entry.get("started_at"), entry.get("completed_at")
    if not start or not end:
        return "-"
    try:
        parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
        return f"{(parse(end) - parse(start)).total_seconds():.1f}"
    except ValueError:
        return "-"


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _unicode_ok(stream: TextIO) -> bool:
    encoding = (getattr(stream, "encoding", None) or "").lower()
    return "utf" in encoding


# --- entry point -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    api = UpgradeApi(args.api_url, sign=args.sign, region=args.region, profile=args.profile, timeout=args.timeout)
    cli = Cli(api, out=out, err=err, as_json=getattr(args, "json", False))
    command = args.command or "deploy"
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "deploy": cli.deploy,
        "list": cli.list,
        "status": cli.status,
        "watch": lambda a: cli.watch(a.upgrade_id, interval=a.interval, through_gate=a.through_gate),
        "logs": cli.logs,
        "continue": cli.continue_,
        "rollback": cli.rollback,
        "abort": cli.abort,
        "resume": cli.resume,
        "customers": lambda a: fleet_cli.run_customers(cli, a),
        "fleet": lambda a: fleet_cli.run_fleet(cli, a, unicode=_unicode_ok(out)),
        "console": lambda a: console_command.run(a, out=out, err=err),
        "rules": lambda a: fleet_cli.run_rules(cli, a),
    }
    try:
        return handlers[command](args)
    except ApiError as exc:
        # The server's message already names every invalid field (422) or the conflicting state (409).
        print(f"upgrade-customers: error: {exc.message} (HTTP {exc.status})", file=err, flush=True)
        return EXIT_ERROR
    except ApiClientError as exc:
        print(f"upgrade-customers: error: {exc}", file=err, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\nupgrade-customers: interrupted (the upgrade itself goes on)", file=err, flush=True)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
