"""The simulated API server's refusals: a Status code, reason and message, as the real one answers."""

from __future__ import annotations

from typing import Any

from upgradectl.local.simcluster.kinds import Kind


class StoreError(Exception):
    """A request the store refuses, with the API server's Status code, reason and message."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def _details(kind: Kind, name: str) -> dict[str, Any]:
    details = {"group": kind.group, "kind": kind.plural, "name": name}
    return {k: v for k, v in details.items() if v}


def not_found(kind: Kind, name: str) -> StoreError:
    return StoreError(404, "NotFound", f'{kind.qualified} "{name}" not found', _details(kind, name))


def already_exists(kind: Kind, name: str) -> StoreError:
    return StoreError(409, "AlreadyExists", f'{kind.qualified} "{name}" already exists', _details(kind, name))


def modified_conflict(kind: Kind, name: str) -> StoreError:
    message = (f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has been modified; '
               "please apply your changes to the latest version and try again")  # fmt: skip
    return StoreError(409, "Conflict", message, _details(kind, name))


def bad_request(message: str) -> StoreError:
    return StoreError(400, "BadRequest", message)
