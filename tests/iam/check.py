"""The static IAM check: per function and configuration, the AWS calls its code can make against the
grants template.yaml gives it. Used by tests/iam/test_iam_wiring.py; run it alone with
`.venv/bin/python -m tests.iam.check` to print the findings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from upgrader.infra.aws_calls import AWS_CALLS, AwsCall
from upgrader.infra.settings import Settings, SettingsError

from tests.iam.callgraph import CLIENT_CUSTOMIZATIONS, SIGNED_HTTP_ACTIONS, Codebase, aws_client_methods
from tests.iam.grants import ACCOUNT, Scenario, arn_matches, condition_parameters, scenarios
from tests.support.sam import sam_transform
from tests.support.template import functions_by_folder, load_template


@dataclass(frozen=True, order=True)
class Need:
    action: str
    resource: str | None  # None: any resource of the grant satisfies it (checked elsewhere)
    site: str


@cache
def codebase() -> Codebase:
    return Codebase()


def declared() -> dict[tuple[str, str], AwsCall]:
    return {(call.site, call.method): call for call in AWS_CALLS}


def declaration_problems(code: Codebase) -> list[str]:
    """Call sites without a declaration, declarations without a call site, actions that do not fit."""
    sites = code.aws_call_sites()
    entries = declared()
    problems = [f"undeclared AWS call {site}: add it to upgrader/infra/aws_calls.py" for site in sites
                if (site.site, site.method) not in entries]  # fmt: skip
    found = {(site.site, site.method) for site in sites}
    problems += [f"upgrader/infra/aws_calls.py declares {key[0]} -> {key[1]}, which no code calls" for key in entries
                 if key not in found]  # fmt: skip
    methods = aws_client_methods(frozenset(code.client_services()))
    for (_, method), call in entries.items():
        customized = CLIENT_CUSTOMIZATIONS.get(method) or SIGNED_HTTP_ACTIONS.get(method)
        expected: set[str] = {customized} if customized else methods.get(method, set())
        if call.action not in expected:
            problems.append(f"{call.site} -> {method} needs one of {sorted(expected)}, declared {call.action}")
    return problems


def needs(call_sites: list[AwsCall], settings: Settings) -> list[Need]:
    return [
        Need(call.action, call.resource(settings, ACCOUNT) if call.resource else None, call.site)
        for call in call_sites
        if call.needs_grant and call.when(settings)
    ]


def function_problems(logical_id: str, calls: list[AwsCall], scenario: Scenario) -> list[str]:
    try:
        settings = Settings.from_env(scenario.environment(logical_id))
        needed = needs(calls, settings)
    except SettingsError as exc:
        return [f"{logical_id}: its code can call AWS but its environment does not configure it: {exc}"]
    grants, _ = scenario.grants(logical_id)
    problems = [
        f"{logical_id}: missing grant {need.action} on {need.resource or '(its resource)'}, called by {need.site}"
        for need in needed
        if not any(
            g.action == need.action and (need.resource is None or arn_matches(need.resource, g.resource))
            for g in grants
        )  # fmt: skip
    ]
    problems += [
        f"{logical_id}: unused grant {grant.action} on {grant.resource} ({grant.where}): its code never makes that call"
        for grant in grants
        if not any(
            n.action == grant.action and (n.resource is None or arn_matches(n.resource, grant.resource)) for n in needed
        )  # fmt: skip
    ]
    return problems


def wiring_problems(sam_template: dict[str, Any], transformed: dict[str, Any] | None = None) -> list[str]:
    """Every mismatch between what each function's code can call and what the template grants it,
    with the configurations (condition parameters) in which it occurs."""
    transformed = transformed if transformed is not None else sam_transform([sam_template])[0]
    code = codebase()
    entries = declared()
    sites = code.aws_call_sites()
    all_scenarios = list(scenarios(transformed))
    seen: dict[str, list[Scenario]] = {}
    for folder, (logical_id, _) in sorted(functions_by_folder(sam_template).items()):
        reachable = code.reachable_from(f"functions.{folder}.app")
        keys = dict.fromkeys((s.site, s.method) for s in sites if s.site in reachable)
        calls = [entries[key] for key in keys if key in entries]
        for scenario in all_scenarios:
            for problem in function_problems(logical_id, calls, scenario):
                seen.setdefault(problem, []).append(scenario)
    return [f"{problem} [{configurations(where, all_scenarios)}]" for problem, where in sorted(seen.items())]


def configurations(where: list[Scenario], every: list[Scenario]) -> str:
    """The configurations a finding occurs in, without the parameters it does not depend on (a parameter whose
    every value shows it, whatever the others are)."""
    if len(where) == len(every):
        return "every configuration"
    names = condition_parameters(every[0].template)
    values = {name: {s.parameters[name] for s in every} for name in names}
    rows = [{name: s.parameters[name] for name in names} for s in where]
    for name in names:
        others = [n for n in rows[0] if n != name]
        seen: dict[tuple[Any, ...], set[Any]] = {}
        for row in rows:
            seen.setdefault(tuple(row[n] for n in others), set()).add(row[name])
        if all(found == values[name] for found in seen.values()):
            rows = [{n: row[n] for n in others} for row in rows]
    shown = dict.fromkeys(", ".join(f"{k}={v!r}" for k, v in sorted(row.items())) for row in rows)
    return "; ".join(shown)


def main() -> int:
    problems = declaration_problems(codebase()) + wiring_problems(load_template())
    print("\n".join(problems) or "IAM wiring: every call granted, every grant used")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
