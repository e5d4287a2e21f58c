"""Least privilege for people: the template's viewer policy allows exactly the GET routes of the API but
helm's full output, which has its own policy (HelmOutputReaderPolicy), the operator policy exactly every
route. Routes come from the template's Api events, so a new route fails these tests until the policies
name it (the failure prints the lines to add)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.iam.grants import arn_matches
from tests.support.template import api_routes, load_template, resources_of

PARAMETER = re.compile(r"\{[^}]+\}")
PREFIX = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/"


def stage(template: dict[str, Any]) -> str:
    (api,) = resources_of(template, "AWS::Serverless::Api").values()
    return str(api["Properties"]["StageName"])


def route_arn(method: str, path: str) -> str:
    """The ARN part after the API id for a request to this route (path parameters filled in)."""
    return method + PARAMETER.sub("p-1", path)


def expected_lines(template: dict[str, Any], routes: set[tuple[str, str]]) -> str:
    return "\n".join(
        f'- !Sub "{PREFIX}{stage(template)}/{method}{PARAMETER.sub("*", path)}"'
        for method, path in sorted(routes, key=lambda r: (r[1], r[0]))
    )


def policy_patterns(template: dict[str, Any], name: str) -> list[str]:
    """The policy's resource patterns after the API id ("<stage>/<METHOD>/<path>")."""
    (statement,) = template["Resources"][name]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke"
    patterns = []
    for resource in statement["Resource"]:
        text = resource["Fn::Sub"]
        assert text.startswith(PREFIX), f"{name}: {text} is not a route of this template's Api"
        patterns.append(text[len(PREFIX) :])
    return patterns


HELM_OUTPUT = ("GET", "/api/upgrades/{upgradeId}/logs/{logId}/output")


def viewer_routes(routes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {r for r in routes if r[0] == "GET" and r != HELM_OUTPUT}


@pytest.mark.parametrize("policy", ["ViewerPolicy", "HelmOutputReaderPolicy", "OperatorPolicy"])
def test_policy_allows_exactly_its_routes(policy: str) -> None:
    """Issue 29 item 4: the viewer policy read helm's whole output (NOTES.txt prints credentials).

    Breakage tried: the output route's line added to the ViewerPolicy: the viewer case fails."""
    template = load_template()
    routes = api_routes(template)
    allowed = {"ViewerPolicy": viewer_routes(routes), "HelmOutputReaderPolicy": {HELM_OUTPUT},
               "OperatorPolicy": routes}[policy]  # fmt: skip
    assert HELM_OUTPUT in routes
    patterns = [p.split("/", 1) for p in policy_patterns(template, policy)]

    def covered(route: tuple[str, str]) -> bool:
        return any(s == stage(template) and arn_matches(route_arn(*route), rest) for s, rest in patterns)

    hint = f"\n{policy} should list:\n{expected_lines(template, allowed)}"
    assert {r for r in routes if covered(r)} == allowed, hint
    stale = [f"{s}/{rest}" for s, rest in patterns if not any(arn_matches(route_arn(*r), rest) for r in allowed)]
    assert stale == [], f"{policy}: patterns that name no route: {stale}{hint}"


def test_every_route_is_covered_by_the_operator_and_only_get_routes_by_the_viewer() -> None:
    template = load_template()
    routes = api_routes(template)
    viewer = [p.split("/", 1)[1] for p in policy_patterns(template, "ViewerPolicy")]
    operator = [p.split("/", 1)[1] for p in policy_patterns(template, "OperatorPolicy")]

    assert routes and {m for m, _ in routes} >= {"GET", "POST"}
    assert all(any(arn_matches(route_arn(*r), p) for p in operator) for r in routes)
    assert not [r for r in routes if r[0] != "GET" and any(arn_matches(route_arn(*r), p) for p in viewer)]
    assert not any(arn_matches(route_arn(*HELM_OUTPUT), p) for p in viewer)


def test_both_policies_are_stack_outputs() -> None:
    outputs = load_template()["Outputs"]
    assert outputs["ViewerPolicyArn"]["Value"] == {"Ref": "ViewerPolicy"}
    assert outputs["OperatorPolicyArn"]["Value"] == {"Ref": "OperatorPolicy"}
    assert outputs["HelmOutputReaderPolicyArn"]["Value"] == {"Ref": "HelmOutputReaderPolicy"}


def covered_routes(template: dict[str, Any], policy: str) -> set[tuple[str, str]]:
    patterns = [p.split("/", 1)[1] for p in policy_patterns(template, policy)]
    return {r for r in api_routes(template) if any(arn_matches(route_arn(*r), p) for p in patterns)}


def test_a_route_added_without_its_policy_line_is_caught() -> None:
    # Given a new POST route in the template that the operator policy does not name
    template = load_template()
    events = template["Resources"]["ApiControlFunction"]["Properties"]["Events"]
    pause = {**events["Abort"]["Properties"], "Path": "/api/upgrades/{upgradeId}/pause"}
    events["Pause"] = {**events["Abort"], "Properties": pause}

    # Then the operator policy does not cover every route any more
    assert api_routes(template) - covered_routes(template, "OperatorPolicy") == {
        ("POST", "/api/upgrades/{upgradeId}/pause")
    }


def test_a_viewer_pattern_that_reaches_a_write_route_is_caught() -> None:
    template = load_template()
    (statement,) = template["Resources"]["ViewerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statement["Resource"].append({"Fn::Sub": PREFIX + "v1/*/api/upgrades/*"})  # any method: too broad

    assert {m for m, _ in covered_routes(template, "ViewerPolicy")} == {"GET", "POST"}
