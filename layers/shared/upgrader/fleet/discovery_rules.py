"""Discovery's rules: which namespaces are customers, and how their ids and release names are made
(configured by the settings, checked at cold start)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from upgrader.cluster.types import NamespaceRef
from upgrader.contract.base import CUSTOMER_ID_PATTERN

DEFAULT_NAMESPACE_PATTERN = "customer-*"
DEFAULT_ID_TEMPLATE = "cust_{suffix}"
DEFAULT_RELEASE_TEMPLATE = "{namespace}"
_ID = re.compile(CUSTOMER_ID_PATTERN)


class RuleError(ValueError):
    """The configured discovery rules cannot work (told at cold start)."""


@dataclass(frozen=True)
class DiscoveryRules:
    """Which namespaces are customers, how their ids and release names are made.

    `id_template` and `release_template` may use {namespace} (the whole name) and {suffix} (the name
    without the pattern's fixed prefix and suffix: ``abc123`` of ``customer-abc123``). With `id_label`,
    a namespace carrying that label takes its value as the customer id instead.
    """

    namespace_pattern: str = DEFAULT_NAMESPACE_PATTERN
    id_template: str = DEFAULT_ID_TEMPLATE
    id_label: str | None = None
    release_template: str = DEFAULT_RELEASE_TEMPLATE
    label_selector: str | None = None

    def __post_init__(self) -> None:
        for template in (self.id_template, self.release_template):
            if "{namespace}" not in template and "{suffix}" not in template:
                raise RuleError(f"{template!r} must use {{namespace}} or {{suffix}}")
            try:
                template.format(namespace="n", suffix="s")
            except (KeyError, IndexError, ValueError) as exc:
                raise RuleError(f"{template!r} may use only {{namespace}} and {{suffix}}: {exc}") from exc
        if not self.namespace_pattern or not any(c in self.namespace_pattern for c in "*?["):
            raise RuleError(f"namespace pattern {self.namespace_pattern!r} must be a glob such as customer-*")

    @classmethod
    def from_settings(cls, settings: Any) -> DiscoveryRules:
        return cls(
            namespace_pattern=settings.customer_namespace_pattern,
            id_template=settings.customer_id_template,
            id_label=settings.customer_id_label,
            release_template=settings.customer_release_template,
            label_selector=settings.customer_namespace_selector,
        )

    def matches(self, namespace: str) -> bool:
        return fnmatch.fnmatchcase(namespace, self.namespace_pattern)

    def suffix(self, namespace: str) -> str:
        first = min(i for i, c in enumerate(self.namespace_pattern) if c in "*?[")
        last = max(i for i, c in enumerate(self.namespace_pattern) if c in "*?]")
        prefix, tail = self.namespace_pattern[:first], self.namespace_pattern[last + 1 :]
        return namespace[len(prefix) : len(namespace) - len(tail) if tail else None]

    def customer_id(self, namespace: NamespaceRef) -> str:
        """The id the rule gives this namespace; RuleError when it is not a valid customer id."""
        if self.id_label and namespace.labels.get(self.id_label):
            made = namespace.labels[self.id_label]
        else:
            made = self.id_template.format(namespace=namespace.name, suffix=self.suffix(namespace.name))
        if not _ID.match(made):
            raise RuleError(
                f"the id rule makes {made!r} of namespace {namespace.name}, which is not a valid customer id "
                "(ASCII letters, digits, '_' and '-', at most 63 characters)"
            )
        return made

    def release_name(self, namespace: str) -> str:
        return self.release_template.format(namespace=namespace, suffix=self.suffix(namespace))
