"""Discovery's ring rule: a namespace label names the customer's ring (`ring=staging` by default).

Kept apart from `discovery_rules` (ids and release names) so the ring can be wired into a sync on its own.
A label whose value is not a ring of the order is a problem the sync reports; the customer keeps the ring
it had (or, with none, the order's default: the last ring).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from upgrader.cluster.types import NamespaceRef
from upgrader.contract.base import LABEL_KEY_PATTERN
from upgrader.fleet.discovery_rules import RuleError
from upgrader.promotion.rings import RingOrder

DEFAULT_RING_LABEL = "ring"
_KEY = re.compile(LABEL_KEY_PATTERN)


@dataclass(frozen=True)
class RingFromLabel:
    """What a namespace's label says of its ring: `ring` (None: no usable label) and, when the label is
    there but names no ring of the order, the `problem` in words (for the sync's problems)."""

    ring: str | None
    problem: str | None = None


@dataclass(frozen=True)
class RingLabelRule:
    label: str = DEFAULT_RING_LABEL
    order: RingOrder = RingOrder()

    def __post_init__(self) -> None:
        if not _KEY.match(self.label):
            raise RuleError(f"ring label {self.label!r} is not a Kubernetes label key")

    def ring_for(self, namespace: NamespaceRef) -> RingFromLabel:
        value = namespace.labels.get(self.label)
        if value is None:
            return RingFromLabel(None)
        if value in self.order.names:
            return RingFromLabel(value)
        return RingFromLabel(
            None,
            f"namespace {namespace.name} has {self.label}={value!r}, which is not a ring "
            f"({', '.join(self.order.names)}); its ring is left as it was",
        )
