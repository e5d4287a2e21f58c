"""helm's command line as the simulated helm reads it: ``helm upgrade`` and ``helm rollback`` with the
flags our Jobs (and people) pass, parsed the way helm's flag parser does (``--flag value`` and
``--flag=value``; an unknown flag is refused with helm's words)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from upgradectl.local.simcluster.values import Values, parse_set

DEFAULT_TIMEOUT_SECONDS = 300.0  # helm's --timeout default: 5m0s
DEFAULT_HISTORY_MAX = 10  # helm upgrade/rollback --history-max default; 0: no limit
_VALUE_FLAGS = {"--namespace", "-n", "--set", "--set-string", "--version", "--timeout", "--description",
                "--history-max", "--kube-context", "--kubeconfig", "--kube-apiserver", "--kube-token"}  # fmt: skip
_BOOL_FLAGS = {"--reuse-values", "--reset-values", "--reset-then-reuse-values", "--wait", "--atomic", "--install",
               "-i", "--debug", "--force", "--cleanup-on-fail", "--wait-for-jobs", "--no-hooks",
               "--create-namespace", "--skip-crds", "--disable-openapi-validation"}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class HelmCall:
    """A ``helm upgrade`` / ``helm rollback`` command line, parsed as helm's flags parse it."""

    operation: str
    release: str = ""
    namespace: str = "default"
    chart: str = ""
    revision: int | None = None  # rollback target; None or 0: the previous revision
    version: str | None = None
    sets: list[str] = field(default_factory=list)
    set_strings: list[str] = field(default_factory=list)
    reuse_values: bool = False
    reset_values: bool = False
    reset_then_reuse_values: bool = False
    wait: bool = False
    atomic: bool = False
    install: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    history_max: int = DEFAULT_HISTORY_MAX
    description: str = ""  # upgrade --description: replaces "Upgrade complete"
    error: str | None = None  # what helm says when it refuses the command line itself

    def overrides(self) -> Values:
        """The values given on the command line: every --set, then every --set-string (Helm's order)."""
        values: Values = {}
        for expression in self.sets:
            parse_set(expression, values, as_string=False)
        for expression in self.set_strings:
            parse_set(expression, values, as_string=True)
        return values


def parse_duration(text: str) -> float:
    """A Go duration ("600s", "5m0s", "1h30m") in seconds; ValueError when it is none."""
    if text in ("0", ""):
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f'time: invalid duration "{text}"')
    return total


def parse_helm_argv(argv: list[str]) -> HelmCall | None:
    """A HelmCall for ``helm upgrade|rollback ...``; None for any other command."""
    if len(argv) < 2 or argv[0].rsplit("/", 1)[-1] != "helm" or argv[1] not in ("upgrade", "rollback"):
        return None
    call = HelmCall(operation=argv[1])
    positional: list[str] = []
    args = argv[2:]
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, has_value, value = arg.partition("=")
        if name in _VALUE_FLAGS:
            if not has_value:
                if index >= len(args):
                    call.error = f"flag needs an argument: {name}"
                    return call
                value = args[index]
                index += 1
            _apply_value_flag(call, name, value)
        elif name in _BOOL_FLAGS:
            enabled = not has_value or value.lower() in ("true", "1", "t")
            _apply_bool_flag(call, name, enabled)
        else:
            call.error = f"unknown flag: {name}" if name.startswith("--") else f"unknown shorthand flag: {name}"
            return call
        if call.error:
            return call
    _apply_positional(call, positional)
    return call


def _apply_value_flag(call: HelmCall, name: str, value: str) -> None:
    if name in ("--namespace", "-n"):
        call.namespace = value
    elif name == "--set":
        call.sets.append(value)
    elif name == "--set-string":
        call.set_strings.append(value)
    elif name == "--version":
        call.version = value
    elif name == "--description":
        call.description = value
    elif name == "--history-max":
        try:
            call.history_max = int(value)
        except ValueError:
            call.error = f'invalid argument "{value}" for "--history-max" flag: strconv.ParseInt: parsing "{value}": invalid syntax'
    elif name == "--timeout":
        try:
            call.timeout_seconds = parse_duration(value)
        except ValueError as exc:
            call.error = f'invalid argument "{value}" for "--timeout" flag: {exc}'


def _apply_bool_flag(call: HelmCall, name: str, enabled: bool) -> None:
    attribute = {"--reuse-values": "reuse_values", "--reset-values": "reset_values",
                 "--reset-then-reuse-values": "reset_then_reuse_values", "--wait": "wait", "--atomic": "atomic",
                 "--install": "install", "-i": "install"}.get(name)  # fmt: skip
    if attribute:
        setattr(call, attribute, enabled)


def _apply_positional(call: HelmCall, positional: list[str]) -> None:
    if call.operation == "upgrade":
        if len(positional) != 2:
            call.error = '"helm upgrade" requires 2 arguments\n\nUsage:  helm upgrade [RELEASE] [CHART] [flags]'
            return
        call.release, call.chart = positional
        call.wait = call.wait or call.atomic  # --atomic implies --wait
        return
    if not positional:  # rollback takes at least 1 argument; helm ignores any beyond the revision
        call.error = (
            '"helm rollback" requires at least 1 argument\n\nUsage:  helm rollback <RELEASE> [REVISION] [flags]'
        )
        return
    call.release = positional[0]
    if len(positional) >= 2:
        try:
            call.revision = int(positional[1])
        except ValueError:
            call.error = (
                f'could not convert revision to a number: strconv.Atoi: parsing "{positional[1]}": invalid syntax'
            )
