"""The release train part of a deploy or plan request (issue 21 item 3, docs/rings.md "Trains"):
`"components": {"api": "v2.0.0", "dashboard": "v2.0.0"}` instead of `component` + `version`, never both.

The train's first component (the registry's order) becomes the request's `component`/`version`, the columns every
query reads; `DeployRequest.changes` gives the whole set.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from upgrader.contract.base import StrictModel, Version
from upgrader.contract.registered import Component
from upgrader.infra.components import component_names
from upgrader.infra.errors import InvalidValue

MAX_TRAIN = 20  # components in one train (a release has a few; the bound keeps a request's size known)
TrainComponents = Annotated[dict[Component, Version], Field(min_length=1, max_length=MAX_TRAIN)] | None
TRAIN_FIELD: Any = Field(
    default=None,
    description="a release train instead of component + version: component -> version, every component at "
    'most once, e.g. {"api": "v2.0.0", "dashboard": "v2.0.0"}. One helm upgrade per customer sets '
    "them all, the compatibility rules and promotion rules are checked on the whole set, and a rollback "
    "restores every component of the train, and only them, in one helm operation (docs/rings.md)",
)


class DuplicateKey(InvalidValue):
    """A JSON object naming a key twice (`{"api": "v2", "api": "v3"}`): json.loads would keep the last."""


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads(text, object_pairs_hook=refuse_duplicate_keys)`: a body naming a key twice is refused, naming
    the key, instead of silently keeping the last value (how a train would name a component twice)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key, f"{key!r} given more than once")
        found[key] = value
    return found


class _Both:
    """`components` sent together with `component`/`version`: refused by the `components` check, naming it."""

    def __init__(self, components: Any) -> None:
        self.components = components


def train_or_single(schema: dict[str, Any]) -> None:
    """The document says what the check says: a request names `component` and `version` (one component), or
    `components` (a release train), never both."""
    schema["required"] = [name for name in schema.get("required", []) if name not in ("component", "version")]
    schema["if"] = {"required": ["components"]}
    schema["then"] = {"not": {"anyOf": [{"required": ["component"]}, {"required": ["version"]}]}}
    schema["else"] = {"required": ["component", "version"]}


def _registry_order(name: Any) -> tuple[int, str]:
    names = component_names()
    return (names.index(name) if name in names else len(names), str(name))


def train_changes(component: str, version: str, components: dict[str, str] | None) -> dict[str, str]:
    """Every component a request sets -> its version, its first component first, then the registry's order."""
    if components is None:
        return {component: version}
    rest = sorted((c for c in components if c != component), key=_registry_order)
    return {component: version, **{c: components[c] for c in rest}}


class TrainOption(StrictModel):
    """The checks of `components` (DeployRequest derives from this; the field itself is declared there, after
    `component` and `version`, so the document lists them in that order)."""

    @model_validator(mode="before")
    @classmethod
    def _train_names_the_first(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("components") is None:
            return data
        if "component" in data or "version" in data:
            return {**data, "components": _Both(data["components"])}
        train = data["components"]
        if isinstance(train, dict) and train:
            first = min(train, key=_registry_order)
            return {**data, "component": first, "version": train[first]}
        return data

    @field_validator("components", mode="before", check_fields=False)
    @classmethod
    def _train_alone(cls, value: Any) -> Any:
        if isinstance(value, _Both):
            raise ValueError(
                "give either component and version (one component) or components (a release train), not both"
            )
        if isinstance(value, dict) and not value:
            raise ValueError("a train names at least one component and its version")
        return value
