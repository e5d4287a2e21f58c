"""template.yaml as data: a loader for CloudFormation's short-form tags and a few lookups."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that turns short-form intrinsics (!Ref, !Sub, !GetAtt, ...) into their long form."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=CloudFormationLoader)  # noqa: S506


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == resource_type}


def functions_by_folder(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """folder under functions/ -> (logical id, resource)."""
    result: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, res in resources_of(template, "AWS::Serverless::Function").items():
        code_uri = res["Properties"]["CodeUri"]
        match = re.fullmatch(r"functions/([a-z_0-9]+)/?", code_uri)
        assert match, f"{name}: CodeUri {code_uri!r} is not functions/<folder>/"
        result[match.group(1)] = (name, res)
    return result


def function_environment(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """The function's environment variables as SAM merges them: Globals first, the function's own on top."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {**globals_env, **own}


def api_routes(template: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every Api event of every function."""
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for res in resources_of(template, "AWS::Serverless::Function").values()
        for event in res["Properties"].get("Events", {}).values()
        if event["Type"] == "Api"
    }


def expand_conditionals(value: Any) -> Iterator[Any]:
    """Both branches of Fn::If (AWS::NoValue dropped), so conditional statements are checked too."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        for branch in (when_true, when_false):
            if branch != {"Ref": "AWS::NoValue"}:
                yield from expand_conditionals(branch)
    else:
        yield value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
