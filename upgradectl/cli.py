"""`upgrade-customers`: the operator CLI (the spec's upgrade-customers.ps1, plus watch/logs/continue/rollback).

    upgrade-customers --component api --version v1.2.0 --strategy canary --canary-percent 10
    upgrade-customers watch 123
    upgrade-customers logs 123 --status failed
    upgrade-customers continue 123
    upgrade-customers rollback 123 cust_abc123
    upgrade-customers --component api --version v1.2.0 --strategy all --dry-run
    upgrade-customers customers list --component api --version v1.1.0
    upgrade-customers fleet
    upgrade-customers promote --component api --version v1.2.0 --ring-strategy production=canary:5

Targets the local stack (http://localhost:3100) unless --api-url / UPGRADE_API_URL names another
API; requests to an AWS endpoint are signed with SigV4 (standard credential chain).

Exit codes: 0 success (or a canary waiting for continue), 1 API/connection error, 2 usage error,
3 the upgrade (or rollback) ended with failures, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from upgrader.contract.strategies import REGISTRY as STRATEGIES

from upgradectl import fleet_cli, promotion_cli
from upgradectl.arguments import build_parser
from upgradectl.client import ApiClientError, ApiError, ApiUnreachable, UpgradeApi
from upgradectl.console import command as console_command
from upgradectl.deploy_request import deploy_request, safety_options
from upgradectl.rendering import duration, is_tty, last_line, progress_line, status_lines, unicode_ok

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FAILURES = 3
EXIT_INTERRUPTED = 130
DEPLOY_ATTEMPTS = 3

FINAL_STATUSES = frozenset({"completed", "completed_with_failures", "failed", "halted", "aborted", "cancelled"})
FAILED_STATUSES = FINAL_STATUSES - {"completed"}


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
        train = getattr(args, "train", None)
        if train and (args.component or args.version):
            print("upgrade-customers: error: give --train, or --component and --version, not both", file=self.err)
            return EXIT_USAGE
        named = (("--strategy", args.strategy),) if train else (
            ("--component", args.component), ("--version", args.version), ("--strategy", args.strategy))  # fmt: skip
        missing = [flag for flag, value in named if not value]
        if missing:
            print(f"upgrade-customers: error: starting an upgrade needs {', '.join(missing)} "
                  "(or give a command: list, status, watch, logs, continue, rollback, customers, fleet)", file=self.err)  # fmt: skip
            return EXIT_USAGE
        try:
            request = deploy_request(args)
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
            self.say(status_lines(data))
        return EXIT_FAILURES if data.get("status") in FAILED_STATUSES else EXIT_OK

    # watch
    def watch(self, upgrade_id: str, *, interval: float, through_gate: bool) -> int:
        live = is_tty(self.out) and not self.as_json
        last = ""
        while True:
            data = self.api.status(upgrade_id)
            state = data.get("status", "")
            if self.as_json:
                line = json.dumps({k: data.get(k) for k in ("upgradeId", "status", "total", "completed", "failed",
                                                            "inProgress", "pending", "skipped")})  # fmt: skip
            else:
                line = progress_line(data, unicode=unicode_ok(self.out))
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
            detail = entry.get("error") or last_line(entry.get("output")) or ""
            self.say(f"{entry['id']:>5}  {entry['customer_id']:<16} {entry.get('operation', 'upgrade'):<8} "
                     f"{entry.get('wave', 0):>4}  {entry['status']:<12} {versions:<22} "
                     f"{duration(entry):>7}  {detail[:100]}")  # fmt: skip
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
            options.update(safety_options(args))
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
                    self.say(f"rollback {row['status']}: {row.get('error') or last_line(row.get('output')) or ''}")
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
        "fleet": lambda a: fleet_cli.run_fleet(cli, a, unicode=unicode_ok(out)),
        "console": lambda a: console_command.run(a, out=out, err=err),
        "rules": lambda a: fleet_cli.run_rules(cli, a),
        "promote": lambda a: promotion_cli.run_promote(cli, a),
        "promotion-rules": lambda a: promotion_cli.run_rules(cli, a),
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
