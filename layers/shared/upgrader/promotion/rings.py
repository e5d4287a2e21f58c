"""Rings: the ordered list of customer groups a version moves through (default staging < internal < early
< production), its validation, and the ring of a customer.

A customer without a ring is in the LAST ring (production): a version reaches an unlabelled customer only
after it has passed every earlier ring, so forgetting a label can delay a customer's upgrade, never
expose it to a version nobody ran before. The first ring (staging) takes any version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from upgrader.contract.base import LABEL_VALUE_PATTERN
from upgrader.infra.errors import InvalidValue

DEFAULT_RING_ORDER: tuple[str, ...] = ("staging", "internal", "early", "production")
MAX_RINGS = 20
_RING_NAME = re.compile(LABEL_VALUE_PATTERN)


class UnknownRing(InvalidValue):
    """A ring that is not in the configured order (a 422 naming the field)."""


def check_ring_name(name: object, field: str) -> str:
    """A ring's name follows a Kubernetes label value's grammar (it may come from a namespace label)."""
    if not isinstance(name, str) or not _RING_NAME.match(name):
        raise InvalidValue(
            field,
            f"{name!r} is not a ring name: 1 to 63 ASCII letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit",
        )
    return name


@dataclass(frozen=True)
class RingOrder:
    """The rings, first to last. Build it with `RingOrder.parse` (which names the field it checks)."""

    names: tuple[str, ...] = DEFAULT_RING_ORDER

    def __post_init__(self) -> None:
        RingOrder.parse(self.names)  # a RingOrder is always valid, however it was built

    @staticmethod
    def parse(value: str | Sequence[str], field: str = "ringOrder") -> RingOrder:
        """An order from a list (the API) or a comma-separated text (a setting: `staging,early,production`).

        Refused, naming `field`: no ring, more than MAX_RINGS, a name twice, a name outside the grammar."""
        names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
        if not names or names == [""]:
            raise InvalidValue(field, "give at least one ring, first to last (e.g. staging,production)")
        if len(names) > MAX_RINGS:
            raise InvalidValue(field, f"at most {MAX_RINGS} rings, not {len(names)}")
        for i, name in enumerate(names):
            check_ring_name(name, f"{field}[{i}]")
        seen: set[str] = set()
        twice = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
        if twice:
            raise InvalidValue(field, f"each ring once: {', '.join(sorted(set(twice)))} given more than once")
        order = object.__new__(RingOrder)
        object.__setattr__(order, "names", tuple(names))
        return order

    @property
    def first(self) -> str:
        return self.names[0]

    @property
    def last(self) -> str:
        return self.names[-1]

    @property
    def default(self) -> str:
        """The ring of a customer that has none: the last (see the module's docstring)."""
        return self.last

    def position(self, ring: str, field: str = "ring") -> int:
        """0 for the first ring; UnknownRing naming `field` for a ring not in the order."""
        try:
            return self.names.index(ring)
        except ValueError:
            raise UnknownRing(field, f"unknown ring {ring!r}; the rings are {', '.join(self.names)}") from None

    def previous(self, ring: str, field: str = "ring") -> str | None:
        """The ring a version must have passed before `ring`; None for the first ring."""
        at = self.position(ring, field)
        return self.names[at - 1] if at else None

    def ring_of(self, stored: str | None) -> str:
        """The ring a customer is in: its own, or the default when it has none or one the order no longer
        holds (the order changed after it was set): the safe side, as for a customer without a label."""
        return stored if stored is not None and stored in self.names else self.default

    def targets(self, rings: Iterable[str], field: str = "rings") -> tuple[str, ...]:
        """A deploy's `rings`: at least one, each known and once; returned in the order's order."""
        asked = list(rings)
        if not asked:
            raise InvalidValue(field, "give at least one ring, or leave rings out to target every ring")
        for i, ring in enumerate(asked):
            self.position(ring, f"{field}[{i}]")
        if len(set(asked)) != len(asked):
            raise InvalidValue(field, "each ring once")
        return tuple(n for n in self.names if n in asked)
