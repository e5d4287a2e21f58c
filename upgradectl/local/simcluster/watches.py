"""One open watch on the simulated API server: what it selects and the events queued for it (see `store`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from upgradectl.local.simcluster.kinds import Kind
from upgradectl.local.simcluster.selectors import FieldSelector, LabelSelector

Obj = dict[str, Any]


@dataclass(eq=False)
class Watch:
    """One open watch: what it selects, and the events queued for it (None: the store closed it)."""

    kind: Kind
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def selects(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def event(self, kind: str, old: Obj | None, new: Obj | None) -> dict[str, Any] | None:
        """The event this watch sees for a write, if any (an object leaving the selection is DELETED)."""
        was = self.selects(old)
        if kind == "DELETED":
            return {"type": "DELETED", "object": new} if was else None
        now = self.selects(new)
        if now:
            return {"type": "MODIFIED" if was else "ADDED", "object": new}
        if was:  # changed so that this watch no longer selects it: gone, for this watch
            return {"type": "DELETED", "object": new}
        return None
