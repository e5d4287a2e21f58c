"""`upgrade-customers customers ...`, `fleet` and `--dry-run`: the customer inventory from the terminal.

upgrade-customers customers list --component api --version v1.1.0 --label tier=premium
upgrade-customers customers show cust_abc123
upgrade-customers customers sync --wait
upgrade-customers customers label cust_abc123 tier=premium old-
upgrade-customers customers pin cust_abc123 api --reason "waiting for sign-off" --days 14
upgrade-customers customers unpin cust_abc123 api
upgrade-customers customers window cust_abc123 --timezone Europe/Berlin --days sat,sun --start 02:00 --duration 120
upgrade-customers fleet
upgrade-customers rules add dashboard '>=2.0' --requires api '>=1.2' --reason "new auth API"
upgrade-customers rules add api '==2.*' --upgrade-from '>=1.4'
upgrade-customers rules list
upgrade-customers rules delete 3
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from upgrader.infra.components import component_names

from upgradectl.analysis_cli import planned_analysis_lines
from upgradectl.client import UpgradeApi

EXIT_OK, EXIT_USAGE, EXIT_FAILURES = 0, 2, 3
SHOWN_PER_WAVE = 12
SHOWN_LEFT_OUT = 20


class Output(Protocol):
    api: UpgradeApi
    out: TextIO
    err: TextIO
    as_json: bool
    sleep: Callable[[float], None]

    def say(self, text: str = "") -> None: ...

    def dump(self, payload: Any) -> None: ...


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """The `customers` and `fleet` commands."""
    customers = commands.add_parser("customers", parents=[common], help="the customer inventory (found by discovery)")
    sub = customers.add_subparsers(dest="customers_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser("list", parents=[common], help="customers, filtered; every page with --all")
    listing.add_argument("--component", choices=component_names(), dest="filter_component")
    listing.add_argument("--version", dest="filter_version", help="with --component: who runs this version")
    listing.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    listing.add_argument("--status", choices=("active", "suspended", "decommissioned"), dest="filter_status")
    listing.add_argument("--drift", action="store_true", help="only customers marked with drift")
    listing.add_argument("--pinned", action="store_true", help="only customers with a pin in force")
    listing.add_argument("--ring", dest="filter_ring", help="only customers of this ring (without one: the last ring)")
    listing.add_argument("--limit", type=int, default=100, help="customers per page (default 100)")
    listing.add_argument("--all", action="store_true", help="follow every page")

    show = sub.add_parser("show", parents=[common], help="one customer: versions, pins, window, drift, history")
    show.add_argument("customer_id")
    show.add_argument("--limit", type=int, default=20, help="operations and history entries (default 20)")

    sync = sub.add_parser("sync", parents=[common], help="sync the inventory with the cluster now")
    sync.add_argument("--wait", action="store_true", help="wait for the sync's result")

    label = sub.add_parser("label", parents=[common], help="set labels (key=value) or remove them (key-)")
    label.add_argument("customer_id")
    label.add_argument("labels", nargs="+", metavar="KEY=VALUE|KEY-")

    pin = sub.add_parser("pin", parents=[common], help="keep a component at a version: deploys leave it out")
    pin.add_argument("customer_id")
    pin.add_argument("component", choices=component_names())
    pin.add_argument("--version", dest="pin_version", help="default: the version it runs now")
    pin.add_argument("--reason", required=True, help="why (shown wherever the customer is left out)")
    until = pin.add_mutually_exclusive_group()
    until.add_argument("--until", help="when the pin ends (RFC 3339, e.g. 2026-12-01T00:00:00Z)")
    until.add_argument("--days", type=int, default=30, help="or: for this many days (default 30)")

    unpin = sub.add_parser("unpin", parents=[common], help="remove a component's pin")
    unpin.add_argument("customer_id")
    unpin.add_argument("component", choices=component_names())

    window = sub.add_parser("window", parents=[common], help="set (or --clear) the maintenance window")
    window.add_argument("customer_id")
    window.add_argument("--timezone", help="IANA time zone, e.g. Europe/Berlin")
    window.add_argument("--days", dest="window_days", help="comma-separated: mon,tue,wed,thu,fri,sat,sun")
    window.add_argument("--start", help="local opening time HH:MM")
    window.add_argument("--duration", type=int, help="minutes the window stays open")
    window.add_argument("--clear", action="store_true", help="remove the window")

    ring = sub.add_parser("set-ring", parents=[common], help="move a customer to a ring (--default: back to the last)")
    ring.add_argument("customer_id")
    target = ring.add_mutually_exclusive_group(required=True)
    target.add_argument("ring", nargs="?", help="one of the rings `fleet` lists")
    target.add_argument("--default", action="store_true", help="no ring of its own: the default (last) ring")

    for name, text in (("suspend", "leave the customer out of every deploy"), ("activate", "make it active again"),
                       ("ack-drift", "the drift was looked at: clear the mark")):  # fmt: skip
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("customer_id")

    commands.add_parser("fleet", parents=[common], help="each component's version spread, as bars")

    rules = commands.add_parser("rules", parents=[common], help="version compatibility rules")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)
    rules_sub.add_parser("list", parents=[common], help="every rule")
    add = rules_sub.add_parser("add", parents=[common], help="add a rule (exactly one of --requires, --upgrade-from)")
    add.add_argument("component", choices=component_names())
    add.add_argument("versions", help="its versions the rule is about, e.g. '>=2.0' or '==2.*'")
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--requires", nargs=2, metavar=("COMPONENT", "VERSIONS"),
                      help="customers at those versions must run COMPONENT at VERSIONS, e.g. api '>=1.2'")  # fmt: skip
    kind.add_argument("--upgrade-from", metavar="VERSIONS", help="upgrades to those versions only from VERSIONS")
    add.add_argument("--reason", help="why (quoted by every refusal)")
    delete = rules_sub.add_parser("delete", parents=[common], help="delete a rule")
    delete.add_argument("rule_id")


def run_customers(cli: Output, args: argparse.Namespace) -> int:
    command = args.customers_command
    if command == "list":
        return _list(cli, args)
    if command == "show":
        return _show(cli, args)
    if command == "sync":
        return _sync(cli, args)
    changes = _changes(args)
    if isinstance(changes, str):
        print(f"upgrade-customers: error: {changes}", file=cli.err)
        return EXIT_USAGE
    result = cli.api.patch_customer(args.customer_id, changes)
    if cli.as_json:
        cli.dump(result)
        return EXIT_OK
    if not result.get("changes"):
        cli.say(f"{args.customer_id}: nothing to change")
        return EXIT_OK
    for field, change in sorted(result["changes"].items()):
        cli.say(f"{args.customer_id}: {field}: {_short(change.get('before'))} → {_short(change.get('after'))}")
    cli.say(f"  by {result.get('changedBy')} at {result.get('changedAt')}")
    return EXIT_OK


def _changes(args: argparse.Namespace) -> dict[str, Any] | str:
    command = args.customers_command
    if command == "label":
        labels: dict[str, str | None] = {}
        for term in args.labels:
            if term.endswith("-") and "=" not in term:
                labels[term[:-1]] = None
            elif "=" in term:
                key, value = term.split("=", 1)
                labels[key] = value
            else:
                return f"labels are KEY=VALUE (set) or KEY- (remove), not {term!r}"
        return {"labels": labels}
    if command == "pin":
        expires = args.until or (datetime.now(UTC) + timedelta(days=args.days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        pin: dict[str, Any] = {"reason": args.reason, "expiresAt": expires}
        if args.pin_version:
            pin["version"] = args.pin_version
        return {"pins": {args.component: pin}}
    if command == "unpin":
        return {"pins": {args.component: None}}
    if command == "window":
        if args.clear:
            return {"maintenanceWindow": None}
        missing = [f"--{n}" for n, v in (("timezone", args.timezone), ("days", args.window_days), ("start", args.start),
                                          ("duration", args.duration)) if v in (None, "")]  # fmt: skip
        if missing:
            return f"a window needs {', '.join(missing)} (or --clear)"
        days = [d.strip() for d in str(args.window_days).split(",") if d.strip()]
        return {"maintenanceWindow": {"timezone": args.timezone, "days": days, "start": args.start,
                                      "durationMinutes": args.duration}}  # fmt: skip
    if command == "ack-drift":
        return {"acknowledgeDrift": True}
    if command == "set-ring":
        return {"ring": None if args.default else args.ring}
    return {"status": "suspended" if command == "suspend" else "active"}


def _list(cli: Output, args: argparse.Namespace) -> int:
    query: dict[str, Any] = {"limit": args.limit}
    if args.filter_component or args.filter_version:
        query.update(component=args.filter_component, version=args.filter_version)
    if args.label:
        query["label"] = ",".join(args.label)
    if args.filter_status:
        query["status"] = args.filter_status
    if args.drift:
        query["drift"] = "true"
    if args.pinned:
        query["pinned"] = "true"
    if args.filter_ring:
        query["ring"] = args.filter_ring
    page = cli.api.all_customers(**query) if args.all else cli.api.list_customers(**query)
    if cli.as_json:
        cli.dump(page)
        return EXIT_OK
    rows = page.get("customers", [])
    if not rows:
        cli.say("no customers match")
        return EXIT_OK
    cli.say(f"{'CUSTOMER':<18} {'STATUS':<15} {'RING':<12} " + " ".join(f"{c.upper():<11}" for c in component_names())
            + "  LABELS")  # fmt: skip
    for row in rows:
        marks = ("drift " if row.get("drift") else "") + ("pinned" if row.get("pins") else "")
        versions = " ".join(f"{row['versions'].get(c, '-'):<11}" for c in component_names())
        labels = ",".join(f"{k}={v}" for k, v in sorted(row.get("labels", {}).items()))
        ring = str(row.get("ring", "-"))
        cli.say(f"{row['customerId']:<18} {row['status']:<15} {ring:<12} {versions}  {labels}  {marks}".rstrip())
    more = f"; more: --cursor {page['nextCursor']} or --all" if page.get("nextCursor") else ""
    cli.say(f"{len(rows)} customers{more}")
    return EXIT_OK


def _show(cli: Output, args: argparse.Namespace) -> int:
    data = cli.api.customer(args.customer_id, limit=args.limit)
    if cli.as_json:
        cli.dump(data)
        return EXIT_OK
    cli.say(f"{data['customerId']}  {data['status']}  namespace {data['namespace']}, release {data['releaseName']} "
            f"(revision {data.get('releaseRevision') or '?'}, chart {data.get('chartVersion') or '?'})")  # fmt: skip
    cli.say("  versions  " + "  ".join(f"{c} {v}" for c, v in data.get("versions", {}).items()))
    cli.say("  labels    " + (", ".join(f"{k}={v}" for k, v in data.get("labels", {}).items()) or "-"))
    window = data.get("maintenanceWindow")
    cli.say("  window    " + (f"{','.join(window['days'])} {window['start']} for {window['durationMinutes']} min "
                              f"({window['timezone']})" if window else "-"))  # fmt: skip
    for component, pin in (data.get("pins") or {}).items():
        state = "expired" if pin.get("expired") else f"until {pin['expiresAt']}"
        cli.say(f"  pinned    {component} at {pin['version']} {state} by {pin.get('pinnedBy')}: {pin['reason']}")
    for component, drift in (data.get("drift") or {}).items():
        cli.say(f"  DRIFT     {component}: recorded {drift.get('recorded')}, the release runs {drift.get('release')} "
                f"(since {drift.get('detectedAt')}); clear with: upgrade-customers customers ack-drift "
                f"{data['customerId']}")  # fmt: skip
    if data.get("releaseError"):
        cli.say(f"  RELEASE   {data['releaseError']}")
    cli.say(f"operations ({data.get('operationsTotal', 0)}):")
    for op in data.get("operations", []):
        why = f"  {op.get('leftOut')}" if op.get("leftOut") else ""
        cli.say(f"  upgrade {op['upgradeId']:>6}  {op['operation']:<8} {op['component']:<10} "
                f"{op.get('fromVersion') or '-'} → {op['toVersion']}  {op['status']}{why}")  # fmt: skip
    cli.say(f"history ({data.get('historyTotal', 0)}):")
    for event in data.get("history", []):
        who = event.get("actor") or f"sync {event.get('syncId')}"
        cli.say(f"  {event['at']}  {event['kind']:<18} {who}  {_short(event.get('detail'))}")
    return EXIT_OK


def _sync(cli: Output, args: argparse.Namespace) -> int:
    started = cli.api.start_sync()
    if not cli.as_json:
        cli.say(started.get("message", "sync started"))
    if not args.wait:
        if cli.as_json:
            cli.dump(started)
        return EXIT_OK
    while True:
        result = cli.api.sync(str(started["syncId"]))
        if result.get("status") in ("completed", "failed"):
            break
        cli.sleep(1.0)
    if cli.as_json:
        cli.dump(result)
    else:
        counts = result.get("counts") or {}
        cli.say(f"sync {result['syncId']} {result['status']}" + (f": {result['error']}" if result.get("error") else ""))
        if counts:
            cli.say("  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for problem in result.get("problems", [])[:SHOWN_LEFT_OUT]:
            cli.say(f"  ! {problem.get('namespace')}: {problem.get('message')}")
    return EXIT_OK if result.get("status") == "completed" else EXIT_FAILURES


def run_fleet(cli: Output, args: argparse.Namespace, *, unicode: bool = True, width: int = 30) -> int:
    data = cli.api.fleet()
    if cli.as_json:
        cli.dump(data)
        return EXIT_OK
    cli.say(fleet_text(data, unicode=unicode, width=width))
    return EXIT_OK


def fleet_text(data: dict[str, Any], *, unicode: bool = True, width: int = 30) -> str:
    """Each component's version spread as bars: one line per version, most customers first."""
    full, empty = ("█", "░") if unicode else ("#", "-")
    total = int(data.get("customers") or 0)
    status = data.get("byStatus") or {}
    lines = [
        f"{total} customers (active {status.get('active', 0)}, suspended {status.get('suspended', 0)}; "
        f"decommissioned {status.get('decommissioned', 0)}), drift {data.get('drift', 0)}, pinned {data.get('pinned', 0)}"
    ]
    by_ring = data.get("byRing") or {}
    if by_ring:
        lines.append("rings: " + ", ".join(f"{ring} {by_ring[ring]}" for ring in data.get("rings", by_ring)))
    for spread in data.get("components", []):
        entries = [(v["version"], int(v["customers"])) for v in spread.get("versions", [])]
        if spread.get("unknown"):
            entries.append(("(unknown)", int(spread["unknown"])))
        for index, (version, count) in enumerate(entries or [("(none)", 0)]):
            cells = round(width * count / total) if total else 0
            share = f"{100 * count / total:3.0f}%" if total else "  -"
            name = spread["component"] if index == 0 else ""
            lines.append(f"{name:<10} {version:<14} {full * cells}{empty * (width - cells)} {count:>6} {share}")
    last = data.get("lastSync")
    if last:
        lines.append(
            f"last sync {last['syncId']}: {last['status']} at {last.get('completedAt') or last.get('createdAt')}"
        )
    return "\n".join(lines)


def run_rules(cli: Output, args: argparse.Namespace) -> int:
    if args.rules_command == "add":
        rule: dict[str, Any] = {"component": args.component, "versions": args.versions}
        if args.requires:
            rule["requires"] = {"component": args.requires[0], "versions": args.requires[1]}
        else:
            rule["upgradeFrom"] = args.upgrade_from
        if args.reason:
            rule["reason"] = args.reason
        result = cli.api.add_rule(rule)
        cli.dump(result) if cli.as_json else cli.say(f"added {result['description']}")
        return EXIT_OK
    if args.rules_command == "delete":
        result = cli.api.delete_rule(args.rule_id)
        cli.dump(result) if cli.as_json else cli.say(result["message"])
        return EXIT_OK
    data = cli.api.rules()
    if cli.as_json:
        cli.dump(data)
    elif not data.get("rules"):
        cli.say("no compatibility rules")
    else:
        for rule in data["rules"]:
            cli.say(f"{rule['description']}   (by {rule.get('createdBy') or '-'} at {rule['createdAt']})")
    return EXIT_OK


def plan_text(plan: dict[str, Any]) -> str:
    """`--dry-run`: the waves and who is left out, as the deploy would run them."""
    lines = [f"Plan (nothing started): {plan['message']}"]
    for wave in plan.get("waves", []):
        ids = [c["customerId"] for c in wave["customers"]]
        shown = ", ".join(ids[:SHOWN_PER_WAVE]) + (
            f" … and {len(ids) - SHOWN_PER_WAVE} more" if len(ids) > SHOWN_PER_WAVE else ""
        )
        gate = {"approval": ", then wait for continue", "bake": ", then bake"}.get(wave.get("gate") or "", "")
        lines.append(f"  wave {wave['wave'] + 1} ({wave['size']} customers{gate}): {shown}")
        waits = [c for c in wave["customers"] if c.get("waitsForWindow")]
        for customer in waits[:SHOWN_PER_WAVE]:
            lines.append(f"    {customer['customerId']} waits for its maintenance window: {customer['waitsForWindow']}")
    left = plan.get("leftOut", [])
    if left:
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(plan.get("leftOutCounts", {}).items()))
        lines.append(f"  left out ({counts}):")
        for entry in left[:SHOWN_LEFT_OUT]:
            lines.append(f"    {entry['customerId']:<18} {entry['reason']:<20} {entry['detail']}")
        if len(left) > SHOWN_LEFT_OUT:
            lines.append(f"    … and {len(left) - SHOWN_LEFT_OUT} more (--json shows everyone)")
    broken = plan.get("incompatible", [])
    if broken:
        lines.append(f"  incompatible (a deploy is refused; --skip-incompatible leaves them out): {len(broken)}")
        for entry in broken[:SHOWN_LEFT_OUT]:
            lines.append(f"    {entry['customerId']:<18} {entry['detail']}: breaks {entry['rule']}")
    if plan.get("activeUpgrade"):
        lines.append(f"  note: upgrade {plan['activeUpgrade']} of this component is active; a deploy now is refused")
    lines += planned_analysis_lines(plan.get("analysis"))
    return "\n".join(lines)


def _short(value: Any, limit: int = 90) -> str:
    text = "-" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
