"""`upgrade-customers promote` (a version to the next ring when its rule allows, with that ring's strategy) and
`upgrade-customers promotion-rules` (list, set, delete, history), over the API (docs/rings.md).

    upgrade-customers promote --component api --version v2.0.0 --ring-strategy staging=all \\
        --ring-strategy production=canary:5
    upgrade-customers promotion-rules set api --min-success 95 --bake 3600

`promote` reads `GET /api/promotions`: the first ring the version has not completed is the next one. When its
decision allows it (a component without a rule is judged by the default rule all the same: promote never
skips ahead), it deploys there with `rings: [that ring]`; otherwise it says what it waits for and exits 3,
or with --wait polls until the wait is over.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from upgrader.contract.strategies import REGISTRY as STRATEGIES
from upgrader.infra.components import component_names

from upgradectl.fleet_cli import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, Output

EXIT_WAITING = EXIT_FAILURES  # the CLI's 3: not done (here: the next ring must wait)


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    promote = commands.add_parser("promote", parents=[common],
                                  help="deploy a version to the next ring its promotion rule allows")  # fmt: skip
    promote.add_argument("--component", required=True, choices=component_names())
    promote.add_argument("--version", required=True, help="the version to promote, e.g. v2.0.0")
    promote.add_argument("--strategy", default="all", metavar="STRATEGY[:N]",
                         help="the strategy on a ring without --ring-strategy (default all): all, batch:N, canary:N "
                              "or progressive:P1,P2,..,100")  # fmt: skip
    promote.add_argument("--ring-strategy", action="append", default=[], metavar="RING=STRATEGY[:N]",
                         help="the strategy on one ring, e.g. production=canary:5 (repeatable)")  # fmt: skip
    promote.add_argument("--max-concurrency", type=int, default=None, metavar="N")
    promote.add_argument("--auto-rollback", action="store_true")
    promote.add_argument("--force-reason", default=None, metavar="TEXT",
                         help="deploy to the next ring even where the rule refuses, for this reason (recorded)")  # fmt: skip
    promote.add_argument("--wait", action="store_true", help="poll until the next ring may start, then deploy")
    promote.add_argument("--interval", type=float, default=30.0, help="seconds between two looks with --wait")

    rules = commands.add_parser("promotion-rules", parents=[common], help="the promotion rules of the components")
    sub = rules.add_subparsers(dest="promotion_rules_command", metavar="SUBCOMMAND", required=True)
    sub.add_parser("list", parents=[common], help="every component's rule and the rings in order")
    put = sub.add_parser("set", parents=[common], help="set a component's rule (audited)")
    put.add_argument("component", choices=component_names())
    put.add_argument("--min-success", type=float, required=True, metavar="PERCENT",
                     help="share of the previous ring's targeted customers that must have succeeded (0-100)")  # fmt: skip
    put.add_argument("--bake", type=int, default=0, metavar="SECONDS",
                     help="seconds since the last upgrade on the previous ring finished (default 0)")  # fmt: skip
    put.add_argument("--allow-halt", action="store_true", help="do not refuse a version that halted on the ring before")
    for name, text in (("delete", "delete a component's rule: its deploys are no longer checked"),
                       ("history", "every change of a component's rule")):  # fmt: skip
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("component", choices=component_names())


def strategy_fields(text: str) -> dict[str, Any]:
    """`all`, `batch:10`, `canary:5`, `progressive:1,5,25,100` as the deploy request's fields."""
    name, _, value = text.partition(":")
    if name not in STRATEGIES.names():
        raise ValueError(f"unknown strategy {name!r} in {text!r}; one of {', '.join(STRATEGIES.names())}")
    fields: dict[str, Any] = {"strategy": name}
    try:
        if value and name == "canary":
            fields["canaryPercent"] = int(value)
        elif value and name == "batch":
            fields["batchSize"] = int(value)
        elif value and name == "progressive":
            fields["steps"] = [int(p) for p in value.split(",")]
        elif value:
            raise ValueError(f"strategy {name} takes no value, not {text!r}")
    except ValueError as exc:
        if "takes no value" in str(exc):
            raise
        raise ValueError(f"{text!r}: the value after ':' must be whole numbers") from None
    return fields


def ring_strategies(default: str, per_ring: list[str]) -> Callable[[str], dict[str, Any]]:
    """The strategy fields of each ring (checked at once, so a typo fails before anything is deployed)."""
    chosen = {"": strategy_fields(default)}
    for term in per_ring:
        ring, sep, strategy = term.partition("=")
        if not sep or not ring:
            raise ValueError(f"--ring-strategy takes RING=STRATEGY[:N], not {term!r}")
        chosen[ring] = strategy_fields(strategy)
    return lambda ring: chosen.get(ring, chosen[""])


def waiting_words(missing: list[dict[str, Any]]) -> list[str]:
    """What the next ring waits for, in words (the API's messages: 'baking on early ... until ...')."""
    return [str(m.get("message") or m.get("reason")) for m in missing]


def run_promote(cli: Output, args: argparse.Namespace) -> int:
    try:
        strategy_of = ring_strategies(args.strategy, args.ring_strategy)
    except ValueError as exc:
        print(f"upgrade-customers: error: {exc}", file=cli.err)
        return EXIT_USAGE
    while True:
        path = cli.api.promotions(args.component, args.version)
        ring = path.get("nextRing")
        if ring is None:
            cli.say(f"{args.component} {args.version} completed on every ring: nothing to promote")
            return EXIT_OK
        step = next(r for r in path["rings"] if r["ring"] == ring)
        running = [
            u["upgradeId"] for u in ((step.get("evidence") or {}).get("upgrades") or []) if u["finishedAt"] is None
        ]
        decision = step["decision"]
        if running:
            waits = [f"upgrade {', '.join(running)} is still running on {ring}"]
        elif decision["allowed"] or args.force_reason:
            return _deploy(cli, args, ring, strategy_of(ring))
        else:
            waits = waiting_words(decision["missing"])
        if not args.wait:
            cli.say(f"{args.component} {args.version} waits before ring {ring}:")
            for line in waits:
                cli.say(f"  - {line}")
            cli.say("  (--wait polls until it may start; --force-reason overrides the rule, recorded)")
            return EXIT_WAITING
        cli.say(f"waiting before ring {ring}: {'; '.join(waits)}")
        cli.sleep(args.interval)


def _deploy(cli: Output, args: argparse.Namespace, ring: str, strategy: dict[str, Any]) -> int:
    request: dict[str, Any] = {"component": args.component, "version": args.version, "rings": [ring], **strategy}
    if args.max_concurrency is not None:
        request["maxConcurrency"] = args.max_concurrency
    if args.auto_rollback:
        request["autoRollback"] = True
    if args.force_reason:
        request.update(force=True, forceReason=args.force_reason)
    started = cli.api.deploy(request)
    if cli.as_json:
        cli.dump(started)
    else:
        cli.say(f"promoting {args.component} {args.version} to ring {ring} ({strategy['strategy']}): "
                f"{started.get('message', 'started')}")  # fmt: skip
        cli.say(f"  upgrade id {started['upgradeId']}   watch: upgrade-customers watch {started['upgradeId']}")
    return EXIT_OK


def run_rules(cli: Output, args: argparse.Namespace) -> int:
    command = args.promotion_rules_command
    if command == "list":
        data = cli.api.promotion_rules()
        if cli.as_json:
            cli.dump(data)
            return EXIT_OK
        cli.say("rings: " + " < ".join(data["ringOrder"]))
        for rule in data["rules"]:
            if not rule["configured"]:
                cli.say(f"{rule['component']:<10} no rule: deploys are not checked")
                continue
            cli.say(
                f"{rule['component']:<10} {_rule_words(rule)}   (by {rule.get('updatedBy')} at {rule.get('updatedAt')})"
            )
        return EXIT_OK
    if command == "set":
        body = {"minSuccessPercent": args.min_success, "minBakeSeconds": args.bake, "noHalt": not args.allow_halt}
        result = cli.api.set_promotion_rule(args.component, body)
        cli.dump(result) if cli.as_json else cli.say(f"{args.component}: {_rule_words(result)}")
        return EXIT_OK
    if command == "delete":
        result = cli.api.delete_promotion_rule(args.component)
        cli.dump(result) if cli.as_json else cli.say(f"{args.component}: no rule, deploys are not checked")
        return EXIT_OK
    data = cli.api.promotion_rule_history(args.component)
    if cli.as_json:
        cli.dump(data)
        return EXIT_OK
    for change in data["changes"] or []:
        cli.say(
            f"{change['createdAt']} {change['kind']:<8} by {change['actor']}: {change['before']} → {change['after']}"
        )
    if not data["changes"]:
        cli.say(f"{args.component}: no change recorded")
    return EXIT_OK


def _rule_words(rule: dict[str, Any]) -> str:
    halts = "a halt refuses" if rule["noHalt"] else "halts allowed"
    return f"{rule['minSuccessPercent']:g} % succeeded on the ring before, bake {rule['minBakeSeconds']} s, {halts}"
