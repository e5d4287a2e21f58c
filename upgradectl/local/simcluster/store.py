"""The simulated API server's storage: O(1) work per request, whatever the number of objects.

Objects are kept per resource by (namespace, name), in key order (a sorted list per resource and per
namespace, as etcd orders ``/registry/<resource>/<namespace>/<name>``), and indexed by every label
key and key=value pair, per namespace and cluster-wide. A LIST with a label selector starts from the
smallest index set its equality / ``in`` / exists terms give and filters the rest; without one it
walks the key order from where the previous page ended. So a request costs what it returns, not
what the cluster holds.

- resourceVersion is one counter for the whole store, moved by every write; each stored object
  carries the value of its last write, a LIST the current one.
- Pagination: ``limit`` + ``continue`` for every resource. The token names the last key returned;
  ``remainingItemCount`` is given when there is no selector (as the API server does). Unlike etcd,
  a continued LIST is not a snapshot: an object created behind the token after page 1 shows up.
- Stored objects are never changed in place: every write stores a new dict (sub-trees shared), so
  a reader (a response being serialised, a watch event) never sees half a write. Callers must not
  mutate what `get` returns.
- Watches get ADDED / MODIFIED / DELETED as an object enters, changes in, or leaves their selection;
  recent events are kept so a watch can resume from a resourceVersion (older: 410 Expired).
"""

from __future__ import annotations

import bisect
import random
import string
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from upgradectl.local.simcluster.api_errors import StoreError, already_exists, bad_request, modified_conflict, not_found
from upgradectl.local.simcluster.identity import new_uid, now_stamp
from upgradectl.local.simcluster.kinds import KINDS, Kind
from upgradectl.local.simcluster.paging import Page, decode_continue, encode_continue, keys_after, remove_sorted
from upgradectl.local.simcluster.patches import json_patch, merge_patch
from upgradectl.local.simcluster.selectors import FieldSelector, LabelSelector, Requirement
from upgradectl.local.simcluster.watches import Watch

Obj = dict[str, Any]
HISTORY_EVENTS = 20_000  # recent events a watch can resume from
Listener = Callable[[str, "Obj | None", "Obj | None"], None]  # (event type, old, new)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _split(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


class ObjectStore:
    """Every object of the simulated cluster. Runs on the API server's event loop thread only."""

    def __init__(self, kinds: Iterable[Kind] = KINDS) -> None:
        self.kinds: dict[str, Kind] = {k.key: k for k in kinds}
        self.revision = 0
        self._objects: dict[str, dict[str, Obj]] = {k: {} for k in self.kinds}  # resource -> "ns/name" -> obj
        self._order: dict[str, list[str]] = {k: [] for k in self.kinds}  # resource -> sorted "ns/name"
        self._order_ns: dict[tuple[str, str], list[str]] = defaultdict(list)  # (resource, ns) -> sorted names
        # label indexes: (resource, ns, key, value) -> names; (resource, key, value) -> "ns/name"; and per key
        self._by_label: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
        self._by_label_all: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._by_label_key: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._by_label_key_all: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._watches: dict[str, set[Watch]] = defaultdict(set)
        self._history: deque[tuple[int, str, str, Obj | None, Obj | None]] = deque(maxlen=HISTORY_EVENTS)
        # Stored objects a LIST looked at (matched or not), since the store began: what a request costs.
        self.examined = 0

    def kind(self, resource: str) -> Kind:
        return self.kinds[resource]

    # --- reads ------------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        """The stored object (read-only) or None."""
        return self._objects[resource].get(_key(namespace, name))

    def count(self, resource: str, namespace: str | None = None) -> int:
        if namespace is None:
            return len(self._objects[resource])
        return len(self._order_ns.get((resource, namespace), ()))

    def names(self, resource: str, namespace: str) -> list[str]:
        return list(self._order_ns.get((resource, namespace), ()))

    def select(self, resource: str, namespace: str | None, labels: LabelSelector) -> Iterator[Obj]:
        """Every object matching `labels` (indexed), in key order."""
        page = self.list_objects(resource, namespace, labels, FieldSelector(()), None, None)
        yield from page.items

    def list_objects(
        self,
        resource: str,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        """One page of a LIST (all of it when `limit` is None or 0)."""
        revision, after = (self.revision, "") if not continue_token else decode_continue(continue_token)
        field_namespace = fields.equal("metadata.namespace")
        if namespace is None and field_namespace is not None:
            namespace = field_namespace
        if not self.kinds[resource].namespaced:
            namespace = None
        objects = self._objects[resource]
        prefix = "" if namespace is None else namespace + "/"
        start = after[len(prefix) :] if namespace is not None and after.startswith(prefix) else after
        wanted = (limit or 0) if (limit or 0) > 0 else None

        name = fields.equal("metadata.name")
        if name is not None and namespace is not None:
            keys: Iterable[str] = [name] if name > start else []
        else:
            candidates = self._candidates(resource, namespace, labels)
            if candidates is not None:
                keys = sorted(k for k in candidates if k > start) if start else sorted(candidates)
            else:
                order = self._order[resource] if namespace is None else self._order_ns.get((resource, namespace), [])
                keys = keys_after(order, start)

        items: list[Obj] = []
        last = ""
        more = False
        for key in keys:
            obj = objects.get(prefix + key)
            if obj is None:
                continue
            self.examined += 1
            meta = obj.get("metadata") or {}
            if not labels.matches(meta.get("labels")) or not fields.matches(obj):
                continue
            if wanted is not None and len(items) == wanted:
                more = True
                break
            items.append(obj)
            last = key
        page = Page(items, revision)
        if more:
            page.continue_token = encode_continue(revision, prefix + last)
            if labels.empty and fields.empty:
                order = self._order[resource] if namespace is None else self._order_ns.get((resource, namespace), [])
                page.remaining = len(order) - bisect.bisect_right(order, last)
        return page

    def _candidates(self, resource: str, namespace: str | None, labels: LabelSelector) -> set[str] | None:
        """The smallest index set that the selector's indexable terms allow (keys relative to the scope)."""
        best: list[set[str]] | None = None
        best_size = -1
        for requirement in labels.requirements:
            if not requirement.indexable:
                continue
            sets = self._index_sets(resource, namespace, requirement)
            size = sum(len(s) for s in sets)
            if best is None or size < best_size:
                best, best_size = sets, size
                if size == 0:
                    break
        if best is None:
            return None
        if len(best) == 1:
            return best[0]
        return set().union(*best)

    def _index_sets(self, resource: str, namespace: str | None, requirement: Requirement) -> list[set[str]]:
        key = requirement.key
        if requirement.operator == "exists":
            if namespace is None:
                return [self._by_label_key_all.get((resource, key), set())]
            return [self._by_label_key.get((resource, namespace, key), set())]
        if namespace is None:
            return [self._by_label_all.get((resource, key, value), set()) for value in requirement.values]
        return [self._by_label.get((resource, namespace, key, value), set()) for value in requirement.values]

    # --- writes -----------------------------------------------------------------------------------

    def create(self, resource: str, obj: Obj, namespace: str | None = None) -> Obj:
        """A client's create: the API server sets uid, creationTimestamp and resourceVersion."""
        kind = self.kinds[resource]
        meta = dict(obj.get("metadata") or {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))  # noqa: S311 - a name
            meta["name"] = f"{meta['generateName']}{suffix}"
        if not meta.get("name"):
            raise StoreError(422, "Invalid", f'{kind.kind} "" is invalid: metadata.name: Required value: name or '
                                             "generateName is required")  # fmt: skip
        if kind.namespaced:
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        key = _key(meta.get("namespace", ""), meta["name"])
        if key in self._objects[resource]:
            raise already_exists(kind, meta["name"])
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_stamp()
        return self._store(kind, None, {**obj, "apiVersion": kind.group_version, "kind": kind.kind, "metadata": meta})

    def put(self, resource: str, obj: Obj) -> Obj:
        """The simulation's own write (a controller's): create or replace, keeping the object's identity."""
        kind = self.kinds[resource]
        meta = dict(obj.get("metadata") or {})
        namespace = meta.get("namespace", "") if kind.namespaced else ""
        old = self._objects[resource].get(_key(namespace, meta["name"]))
        if old is not None:
            old_meta = old.get("metadata") or {}
            meta["uid"] = old_meta.get("uid")
            meta["creationTimestamp"] = old_meta.get("creationTimestamp")
        else:
            meta.setdefault("uid", new_uid())
            meta.setdefault("creationTimestamp", now_stamp())
        return self._store(kind, old, {"apiVersion": kind.group_version, "kind": kind.kind, **obj, "metadata": meta})

    def replace(self, resource: str, namespace: str, name: str, obj: Obj, *, subresource: str | None = None) -> Obj:
        """A client's PUT (update); on the status subresource only the status changes."""
        kind = self.kinds[resource]
        old = self._existing(kind, namespace, name)
        meta = dict(obj.get("metadata") or {})
        self._precondition(kind, old, meta.get("resourceVersion"))
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if subresource == "status":
            new = {**old, "status": obj.get("status")}
        else:
            old_meta = old.get("metadata") or {}
            meta.update(name=name, uid=old_meta.get("uid"), creationTimestamp=old_meta.get("creationTimestamp"))
            if kind.namespaced:
                meta["namespace"] = namespace
            new = {**obj, "apiVersion": kind.group_version, "kind": kind.kind, "metadata": meta}
        return self._store(kind, old, new)

    def patch(
        self, resource: str, namespace: str, name: str, patch: Any, *, content_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj:  # fmt: skip
        """A client's PATCH: "merge" (RFC 7386; also used for strategic merge: lists are replaced) or
        "json" (RFC 6902). On the status subresource only the status changes."""
        kind = self.kinds[resource]
        old = self._existing(kind, namespace, name)
        if content_type == "json":
            patched = json_patch(old, patch)
        else:
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            self._precondition(kind, old, (patch.get("metadata") or {}).get("resourceVersion"))
            patched = merge_patch(old, patch)
        if subresource == "status":
            patched = {**old, "status": patched.get("status")}
        else:
            old_meta = old.get("metadata") or {}
            patched["metadata"] = {**(patched.get("metadata") or {}), "name": name, "uid": old_meta.get("uid"),
                                   "creationTimestamp": old_meta.get("creationTimestamp")}  # fmt: skip
            if kind.namespaced:
                patched["metadata"]["namespace"] = namespace
        return self._store(kind, old, patched)

    def merge(self, resource: str, namespace: str, name: str, changes: Obj) -> Obj:
        """The simulation's own partial write (a controller's status update): a merge patch."""
        kind = self.kinds[resource]
        old = self._existing(kind, namespace, name)
        return self._store(kind, old, merge_patch(old, changes))

    def delete(self, resource: str, namespace: str, name: str) -> Obj:
        kind = self.kinds[resource]
        old = self._existing(kind, namespace, name)
        key = _key(namespace if kind.namespaced else "", name)
        del self._objects[resource][key]
        self._unindex(resource, key, old)
        self.revision += 1
        gone = {**old, "metadata": {**(old.get("metadata") or {}), "resourceVersion": str(self.revision)}}
        self._emit(kind, "DELETED", old, gone)
        return gone

    def _existing(self, kind: Kind, namespace: str, name: str) -> Obj:
        found = self._objects[kind.key].get(_key(namespace if kind.namespaced else "", name))
        if found is None:
            raise not_found(kind, name)
        return found

    @staticmethod
    def _precondition(kind: Kind, old: Obj, wanted: Any) -> None:
        if wanted and str(wanted) != str((old.get("metadata") or {}).get("resourceVersion")):
            raise modified_conflict(kind, str((old.get("metadata") or {}).get("name")))

    def _store(self, kind: Kind, old: Obj | None, new: Obj) -> Obj:
        self.revision += 1
        meta = {**(new.get("metadata") or {}), "resourceVersion": str(self.revision)}
        if not kind.namespaced:
            meta.pop("namespace", None)
        new = {**new, "metadata": meta}
        key = _key(meta.get("namespace", ""), meta["name"])
        if old is not None:
            self._unindex(kind.key, key, old)
        self._objects[kind.key][key] = new
        self._index(kind.key, key, new, created=old is None)
        self._emit(kind, "ADDED" if old is None else "MODIFIED", old, new)
        return new

    def _index(self, resource: str, key: str, obj: Obj, *, created: bool) -> None:
        namespace, name = _split(key)
        if created:
            bisect.insort(self._order[resource], key)
            bisect.insort(self._order_ns[(resource, namespace)], name)
        for label, value in ((obj.get("metadata") or {}).get("labels") or {}).items():
            self._by_label[(resource, namespace, label, value)].add(name)
            self._by_label_all[(resource, label, value)].add(key)
            self._by_label_key[(resource, namespace, label)].add(name)
            self._by_label_key_all[(resource, label)].add(key)

    def _unindex(self, resource: str, key: str, obj: Obj) -> None:
        namespace, name = _split(key)
        if key not in self._objects[resource]:  # deleted: out of the key order too
            remove_sorted(self._order[resource], key)
            names = self._order_ns[(resource, namespace)]
            remove_sorted(names, name)
            if not names:
                del self._order_ns[(resource, namespace)]
        for label, value in ((obj.get("metadata") or {}).get("labels") or {}).items():
            _discard(self._by_label, (resource, namespace, label, value), name)
            _discard(self._by_label_all, (resource, label, value), key)
            _discard(self._by_label_key, (resource, namespace, label), name)
            _discard(self._by_label_key_all, (resource, label), key)

    # --- change notification ----------------------------------------------------------------------

    def on_change(self, resource: str, listener: Listener) -> None:
        """Call `listener(type, old, new)` after every write of `resource` (synchronously)."""
        self._listeners[resource].append(listener)

    def _emit(self, kind: Kind, event: str, old: Obj | None, new: Obj | None) -> None:
        self._history.append((self.revision, kind.key, event, old, new))
        for listener in self._listeners.get(kind.key, ()):
            listener(event, old, new)
        for watch in self._watches.get(kind.key, ()):
            seen = watch.event(event, old, new)
            if seen is not None:
                watch.queue.put_nowait(seen)

    def open_watch(self, watch: Watch, since: str | None) -> None:
        """Start `watch`: from now, after resourceVersion `since` (replayed), or with the current
        objects as ADDED when `since` is empty or "0". Too old a `since` queues a 410 Expired."""
        if since and since != "0":
            try:
                revision = int(since)
            except ValueError as exc:
                raise bad_request(f"invalid resource version: {since!r}") from exc
            oldest = self._history[0][0] if self._history else self.revision + 1
            if revision < oldest - 1 and revision < self.revision:
                message = f"too old resource version: {revision} ({oldest - 1})"
                watch.queue.put_nowait({"type": "ERROR", "object": {
                    "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": 410,
                    "reason": "Expired", "message": message}})  # fmt: skip
                watch.queue.put_nowait(None)
                return
            for number, resource, event, old, new in self._history:
                if number > revision and resource == watch.kind.key:
                    seen = watch.event(event, old, new)
                    if seen is not None:
                        watch.queue.put_nowait(seen)
        else:
            for obj in self.select(watch.kind.key, watch.namespace, watch.labels):
                if watch.fields.matches(obj):
                    watch.queue.put_nowait({"type": "ADDED", "object": obj})
        self._watches[watch.kind.key].add(watch)

    def close_watch(self, watch: Watch) -> None:
        self._watches[watch.kind.key].discard(watch)

    def close_all_watches(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.queue.put_nowait(None)
            watches.clear()


def _discard(index: dict[Any, set[str]], index_key: Any, member: str) -> None:
    members = index.get(index_key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[index_key]
