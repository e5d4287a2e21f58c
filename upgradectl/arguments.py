"""The `upgrade-customers` command line: its flags and subcommands (argparse)."""

from __future__ import annotations

import argparse
import os

from upgrader.infra.components import component_names

from upgradectl import fleet_cli, promotion_cli
from upgradectl.client import DEFAULT_API_URL
from upgradectl.console import command as console_command
from upgradectl.deploy_request import add_deploy_arguments


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
    add_deploy_arguments(parser, suppress=False)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    deploy = commands.add_parser("deploy", parents=[common], help="start an upgrade (same flags as the top level)")
    add_deploy_arguments(deploy, suppress=True)

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
    promotion_cli.add_parsers(commands, common)
    console_command.add_parser(commands, common)
    return parser
