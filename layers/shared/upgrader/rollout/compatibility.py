"""Version compatibility rules: kept in the database, managed through the API, checked by deploys,
plans and rollbacks.

Two kinds of rule, both compared as versions (`packaging`: PEP 440, a leading `v` allowed), never as
strings:

- requires:     "dashboard >=2.0 requires api >=1.2": a customer whose dashboard is (after the
                change) in `versions` must run api in `requires.versions`.
- upgradeFrom:  "api ==2.* upgrades only from >=1.4": moving a customer's api to a version in
                `versions` needs its current api in `upgradeFrom`.

A version that is not a version (`latest`) or not known matches no rule's `versions` (the rule does
not apply); as a required version it breaks the rule (it cannot be shown to comply).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, model_validator

from upgrader.contract.base import FREE_TEXT_PATTERN, Model, StrictModel, Timestamp, from_record
from upgrader.contract.customer_models import IncompatibleCustomer
from upgrader.contract.models import Component
from upgrader.infra.db import Database, columns, select, select_one
from upgrader.infra.errors import InvalidValue, NotFound, UpgradeError

# A PEP 440 version specifier set, e.g. ">=2.0", ">=1.4,<2", "==2.*", "~=1.2" (a leading v allowed).
SPECIFIER_PATTERN = r"^[0-9A-Za-z.*!=<>~+, -]{1,200}$"


def _parses(text: str) -> str:
    try:
        SpecifierSet(text)
    except InvalidSpecifier as exc:
        raise ValueError(f"not a version specifier ({exc}); e.g. >=2.0, ==2.*, >=1.4,<2") from exc
    return text


Specifier = Annotated[
    str, StringConstraints(pattern=SPECIFIER_PATTERN, min_length=1, max_length=200), AfterValidator(_parses)
]
MAX_RULES = 500


class RuleNotFound(NotFound):
    pass


class IncompatibleVersions(UpgradeError):
    """The change would break compatibility rules for these customers (a 422 listing them)."""

    http_status = 422

    def __init__(self, message: str, customers: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.customers = customers


# ------------------------------------------------------------------------------------------ models
class Requirement(StrictModel):
    component: Component = Field(description="the component that must be at a compatible version")
    versions: Specifier = Field(description="its versions that comply, as a version specifier, e.g. >=1.2")


class RuleRequest(StrictModel):
    """Exactly one of `requires` or `upgradeFrom`."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["requires"]}, {"required": ["upgradeFrom"]}]})

    component: Component = Field(description="the component the rule is about")
    versions: Specifier = Field(description="its versions the rule applies to, e.g. >=2.0, ==2.*, >=1.4,<2")
    requires: Requirement | None = Field(
        default=None, description="customers at those versions must run this component at these versions"
    )
    upgrade_from: Specifier | None = Field(
        default=None, description="a customer moves to those versions only from a current version in this set"
    )
    reason: Annotated[str, StringConstraints(max_length=500, pattern=FREE_TEXT_PATTERN)] | None = Field(
        default=None, description="why (shown with every refusal); no control characters"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> RuleRequest:
        if (self.requires is None) == (self.upgrade_from is None):
            raise ValueError("give exactly one of requires or upgradeFrom")
        return self


class RuleView(Model):
    rule_id: str
    component: str
    versions: str
    requires: Requirement | None
    upgrade_from: str | None
    reason: str | None
    description: str = Field(description="the rule in words, as refusals quote it")
    created_by: str | None
    created_at: Timestamp


class RuleList(Model):
    count: int
    rules: list[RuleView]


class RuleDeleted(Model):
    message: str
    rule_id: str


# ------------------------------------------------------------------------------------------ domain
@dataclass(frozen=True)
class Rule:
    id: int
    component: str
    versions: str
    kind: Literal["requires", "upgrade_from"]
    requires_component: str | None
    requires_versions: str
    reason: str | None = None
    created_by: str | None = None  # who recorded it, and when (a record read from the table carries them)
    created_at: datetime | None = None

    @property
    def rule_id(self) -> str:
        return str(self.id)

    @property
    def requires(self) -> Requirement | None:
        if self.kind != "requires":
            return None
        return Requirement.model_validate({"component": self.requires_component, "versions": self.requires_versions})

    @property
    def upgrade_from(self) -> str | None:
        return self.requires_versions if self.kind == "upgrade_from" else None

    def wording(self) -> str:
        if self.kind == "requires":
            text = f"{self.component} {self.versions} requires {self.requires_component} {self.requires_versions}"
        else:
            text = f"{self.component} {self.versions} upgrades only from {self.component} {self.requires_versions}"
        return f"rule {self.id}: {text}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Violation:
    customer_id: str
    rule: Rule
    detail: str

    def view(self) -> IncompatibleCustomer:
        return IncompatibleCustomer(
            customer_id=self.customer_id, rule_id=str(self.rule.id), rule=self.rule.wording(), detail=self.detail
        )


def within(version: str | None, specifier: str) -> bool | None:
    """Whether `version` is in the specifier set; None when it is unknown or not a version."""
    if version is None:
        return None
    try:
        parsed = Version(version)
    except InvalidVersion:
        return None
    return SpecifierSet(specifier).contains(parsed, prereleases=True)


def violations(
    rules: Iterable[Rule], customer_id: str, versions: Mapping[str, str], component: str, new_version: str
) -> list[Violation]:
    """The rules broken by moving this customer's `component` from what it runs (`versions`) to `new_version`."""
    return violations_of_changes(rules, customer_id, versions, {component: new_version})


def violations_of_changes(
    rules: Iterable[Rule], customer_id: str, versions: Mapping[str, str], changes: Mapping[str, str]
) -> list[Violation]:
    """The rules broken by moving this customer's components to `changes` all at once (what it runs: `versions`):
    one component (a deploy), or several (a release train, `upgrader.promotion.trains`). A rule is checked when it
    concerns a changed component, on the versions after the change."""
    after = {**versions, **changes}
    found: list[Violation] = []
    for rule in rules:
        if rule.kind == "upgrade_from":
            new = changes.get(rule.component)
            if new is None or within(new, rule.versions) is not True:
                continue
            before = versions.get(rule.component)
            if within(before, rule.requires_versions) is not True:
                found.append(Violation(customer_id, rule, f"{rule.component} would go from {before or 'unknown'} "
                                                          f"to {new}"))  # fmt: skip
            continue
        if rule.component not in changes and rule.requires_component not in changes:
            continue
        if within(after.get(rule.component), rule.versions) is not True:
            continue
        required = after.get(str(rule.requires_component))
        if within(required, rule.requires_versions) is not True:
            found.append(Violation(customer_id, rule, f"{rule.component} {after.get(rule.component)} with "
                                                      f"{rule.requires_component} {required or 'unknown'}"))  # fmt: skip
    return found


def refusal(found: Sequence[Violation], what: str, *, hint: str) -> IncompatibleVersions:
    """The 422 of a change that breaks rules: the first few in the message, every customer in the body."""
    shown = "; ".join(f"{v.customer_id}: {v.detail} breaks {v.rule.wording()}" for v in found[:5])
    more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
    customers = len({v.customer_id for v in found})
    return IncompatibleVersions(
        f"{what} would break compatibility rules for {customers} customer(s): {shown}{more}; {hint}",
        [v.view().model_dump() for v in found],
    )


# -------------------------------------------------------------------------------------- repository
_RULE = columns(Rule)


class RuleRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def rules(self, component: str | None = None) -> list[Rule]:
        """Every rule (or those that concern `component`: about it, or requiring it)."""
        with self._db.transaction() as cur:
            return select(
                cur,
                Rule,
                f"SELECT {_RULE} FROM compatibility_rules WHERE %(c)s::text IS NULL OR component = %(c)s"
                " OR requires_component = %(c)s ORDER BY id",
                {"c": component},
            )

    def create(self, request: RuleRequest, created_by: str | None) -> Rule:
        with self._db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(727002)")  # the count below stays true
            cur.execute("SELECT count(*) AS n FROM compatibility_rules")
            if int(cur.fetchone()["n"]) >= MAX_RULES:  # type: ignore[index]
                raise InvalidValue("body", f"at most {MAX_RULES} rules; delete one first")
            requires = request.requires
            created = select_one(
                cur,
                Rule,
                f"""
                INSERT INTO compatibility_rules (component, versions, kind, requires_component, requires_versions,
                                                 reason, created_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_RULE}
                """,
                (request.component, request.versions, "requires" if requires else "upgrade_from",
                 requires.component if requires else None,
                 requires.versions if requires else request.upgrade_from, request.reason, created_by),
            )  # fmt: skip
            assert created is not None
            return created

    def delete(self, rule_id: int) -> bool:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM compatibility_rules WHERE id = %s", (rule_id,))
            return cur.rowcount == 1

    def customer_versions(self, customer_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """What each customer runs, per component (the inventory's versions)."""
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT customer_id, component, version FROM customer_component_versions WHERE customer_id = ANY(%s)",
                (list(customer_ids),),
            )
            found: dict[str, dict[str, str]] = {c: {} for c in customer_ids}
            for r in cur.fetchall():
                found[r["customer_id"]][r["component"]] = r["version"]
            return found


# ----------------------------------------------------------------------------------- API functions
def record_rule(request: RuleRequest, *, created_by: str | None, rules: RuleRepository) -> RuleView:
    """Record a rule (its specifiers parse: the request model checks them)."""
    if request.requires is not None and request.requires.component == request.component:
        raise InvalidValue("requires.component", "a component cannot require itself; use upgradeFrom")
    return rule_view(rules.create(request, created_by))


def rules_in_force(*, rules: RuleRepository) -> RuleList:
    views = [rule_view(r) for r in rules.rules()]
    return RuleList(count=len(views), rules=views)


def remove_rule(rule_id: int, *, rules: RuleRepository) -> RuleDeleted:
    if not rules.delete(rule_id):
        raise RuleNotFound(f"compatibility rule {rule_id} not found")
    return RuleDeleted(message=f"compatibility rule {rule_id} deleted", rule_id=str(rule_id))


def rule_view(rule: Rule) -> RuleView:
    return from_record(RuleView, rule, description=rule.wording())
