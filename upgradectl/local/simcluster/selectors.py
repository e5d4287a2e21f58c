"""Label and field selectors, parsed and matched the way the API server does (apimachinery's labels
and fields packages), so the simulated LIST and WATCH filter exactly like a real one.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a`` (exists),
``!a`` (does not exist), ``a>3``/``a<3`` (integers), comma-separated, all required. Field selectors:
``metadata.name``, ``metadata.namespace`` on every kind, plus ``status.phase`` on pods and ``type``
on Secrets, with ``=``, ``==`` or ``!=``. An invalid selector is a `SelectorError` (answered 400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A label key: an optional DNS-subdomain prefix and "/", then a name of at most 63 characters.
_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SET_TERM = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")
# Field labels every kind supports, and those a kind adds (as the API server registers them).
FIELDS_ANY = frozenset({"metadata.name", "metadata.namespace"})
FIELDS_BY_PLURAL: dict[str, frozenset[str]] = {
    "pods": frozenset({"status.phase", "spec.nodeName", "spec.serviceAccountName"}),
    "secrets": frozenset({"type"}),
    "jobs": frozenset({"status.successful"}),
}


class SelectorError(ValueError):
    """The selector cannot be parsed (the API server answers 400 BadRequest)."""


@dataclass(frozen=True)
class Requirement:
    """One term: key, operator ("=", "!=", "in", "notin", "exists", "!", ">", "<") and its values."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op, present = self.operator, self.key in labels
        if op == "exists":
            return present
        if op == "!":
            return not present
        value = labels.get(self.key)
        if op in ("=", "in"):
            return value in self.values
        if op in ("!=", "notin"):
            return value not in self.values
        if value is None:
            return False
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(next(iter(self.values)))
        return number > bound if op == ">" else number < bound

    @property
    def indexable(self) -> bool:
        """The objects that match are a union of (key, value) index sets (or the key's set)."""
        return self.operator in ("=", "in", "exists")


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _split_terms(text: str) -> list[str]:
    """Split on the commas that are not inside `in (...)` / `notin (...)`."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unexpected ')' in {text!r}")
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise SelectorError(f"unable to parse requirement: unclosed '(' in {text!r}")
    terms.append("".join(current))
    return [t.strip() for t in terms if t.strip()]


def _key(key: str) -> str:
    if not _KEY.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
    return key


def _value(value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"unable to parse requirement: invalid label value: {value!r}")
    return value


def parse_label_selector(text: str | None) -> LabelSelector:
    """A label selector; the empty string selects everything."""
    requirements: list[Requirement] = []
    for term in _split_terms(text or ""):
        set_term = _SET_TERM.match(term)
        if set_term:
            key, op, inner = set_term.groups()
            if not inner.strip():
                raise SelectorError(
                    f"unable to parse requirement: for '{op}', '{op}' operators, values set can't be empty"
                )
            values = frozenset(_value(v.strip()) for v in inner.split(","))
            requirements.append(Requirement(_key(key), op, values))
        elif "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            requirements.append(Requirement(_key(key), "!=", frozenset({_value(value)})))
        elif "=" in term:
            key, value = (p.strip() for p in term.split("==" if "==" in term else "=", 1))
            requirements.append(Requirement(_key(key), "=", frozenset({_value(value)})))
        elif ">" in term or "<" in term:
            op = ">" if ">" in term else "<"
            key, value = (p.strip() for p in term.split(op, 1))
            if not re.fullmatch(r"-?\d+", value):
                raise SelectorError(f"unable to parse requirement: for '{op}' operator, the value must be an integer")
            requirements.append(Requirement(_key(key), op, frozenset({value})))
        elif term.startswith("!"):
            requirements.append(Requirement(_key(term[1:].strip()), "!"))
        else:
            requirements.append(Requirement(_key(term), "exists"))
    return LabelSelector(tuple(requirements))


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...]  # (field, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, name) == value) is equal for name, equal, value in self.terms)

    def equal(self, name: str) -> str | None:
        """The value `name` must equal, when the selector says so."""
        return next((value for field, equal, value in self.terms if field == name and equal), None)

    @property
    def empty(self) -> bool:
        return not self.terms


def field_value(obj: Mapping[str, Any], name: str) -> str:
    current: Any = obj
    for part in name.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    return "" if current is None else str(current)


def parse_field_selector(text: str | None, plural: str) -> FieldSelector:
    terms = []
    supported = FIELDS_ANY | FIELDS_BY_PLURAL.get(plural, frozenset())
    for term in _split_terms(text or ""):
        if "!=" in term:
            name, value = term.split("!=", 1)
            equal = False
        elif "=" in term:
            name, value = term.split("==" if "==" in term else "=", 1)
            equal = True
        else:
            raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")
        name = name.strip()
        if name not in supported:
            raise SelectorError(f"field label not supported: {name}")
        terms.append((name, equal, value.strip()))
    return FieldSelector(tuple(terms))
