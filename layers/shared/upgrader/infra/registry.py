"""A registry of named facts, in their order: the components (upgrader.infra.components) and the strategies
(upgrader.contract.strategies). Read when asked, so a test may `add` one more entry and `remove` it after.
Standard library only."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


class Registry(Generic[N]):
    """The entries by name, in the order they were registered (the API's enums, the CLI's choices)."""

    def __init__(self, kind: str, entries: Iterable[N]) -> None:
        self._kind = kind
        self._entries = {entry.name: entry for entry in entries}

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def get(self, name: str) -> N:
        """The entry of that name; ValueError for an unknown one."""
        if name not in self._entries:
            raise ValueError(f"unknown {self._kind} {name!r}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[N]:
        return iter(tuple(self._entries.values()))

    def add(self, entry: N) -> None:
        """Register one more (tests: a fifth component, a new strategy, through the whole product)."""
        if entry.name in self._entries:
            raise ValueError(f"{self._kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        del self._entries[name]
