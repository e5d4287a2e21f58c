"""Release trains: one upgrade that sets several components at once (`"components": {"api": "v2.0.0",
"dashboard": "v2.0.0"}`), in one helm upgrade per customer.

The compatibility rules (`upgrader.rollout.compatibility`) are checked on the SET: each rule sees every
component of the train at its new version, so "api 2 requires dashboard 2" and "dashboard 2 requires
api 2" refuse either component alone and allow both together. For a train of one component the answer
is exactly `compatibility.violations`'s (tests/unit/test_trains.py compares them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from upgrader.contract.base import VERSION_PATTERN, StrictModel, Version
from upgrader.contract.registered import Component
from upgrader.infra.components import REGISTRY
from upgrader.infra.errors import InvalidValue
from upgrader.rollout.compatibility import IncompatibleVersions, Rule, refusal, violations_of_changes

_VERSION = re.compile(VERSION_PATTERN)


class DuplicateKey(InvalidValue):
    """A JSON object naming a key twice (`{"api": "v2", "api": "v3"}`): json.loads would keep the last."""


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads(text, object_pairs_hook=refuse_duplicate_keys)`: a body naming a key twice is refused,
    naming the key, instead of silently keeping the last value (how a train names a component twice)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key, f"{key!r} given more than once")
        found[key] = value
    return found


def _nonempty(components: dict[str, str]) -> dict[str, str]:
    if not components:
        raise ValueError("name at least one component and its version")
    return components


class TrainRequest(StrictModel):
    """The train part of a deploy or plan request (the single-component request stays as it is)."""

    components: Annotated[dict[Component, Version], AfterValidator(_nonempty)] = Field(
        description="component -> the version to set; every component at most once, at least one",
        json_schema_extra={"minProperties": 1},
    )


def train_components(value: object, field: str = "components") -> dict[str, str]:
    """The same checks as TrainRequest without pydantic (the CLI, a stored train): a JSON object of known
    components to versions, at least one; InvalidValue naming `field` or `field.<component>`."""
    if not isinstance(value, Mapping):
        raise InvalidValue(field, 'an object of component -> version, e.g. {"api": "v2.0.0"}')
    if not value:
        raise InvalidValue(field, "name at least one component and its version")
    known = REGISTRY.names()
    for component, version in value.items():
        if component not in known:
            raise InvalidValue(f"{field}.{component}", f"unknown component; one of {', '.join(known)}")
        if not isinstance(version, str) or not _VERSION.match(version):
            raise InvalidValue(f"{field}.{component}", f"{version!r} is not a version (OCI tag grammar)")
    return {str(c): str(v) for c, v in value.items()}


# The compatibility rules on a train's whole set: the one rule of upgrader.rollout.compatibility, for several changes.
train_violations = violations_of_changes


def train_in_words(changes: Mapping[str, str]) -> str:
    return " + ".join(f"{c} {v}" for c, v in changes.items())


def check_train(
    rules: Sequence[Rule], fleet_versions: Mapping[str, Mapping[str, str]], changes: Mapping[str, str]
) -> IncompatibleVersions | None:
    """The 422 of a train that breaks a rule for any customer (`fleet_versions`: customer -> what it runs),
    or None when every customer may take the whole train."""
    found = [v for customer, versions in fleet_versions.items()
             for v in train_violations(rules, customer, versions, changes)]  # fmt: skip
    if not found:
        return None
    return refusal(found, f"the train {train_in_words(changes)}",
                   hint="add the missing component to the train, or leave these customers out")  # fmt: skip
