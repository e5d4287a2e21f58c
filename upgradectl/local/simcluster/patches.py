"""PATCH bodies the simulated API server applies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""

from __future__ import annotations

import json
from typing import Any

from upgradectl.local.simcluster.api_errors import StoreError, bad_request


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value, sharing what the patch does not touch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) on a deep copy of `document`."""
    if not isinstance(operations, list):
        raise bad_request("json patch: the body must be a list of operations")
    doc = json.loads(json.dumps(document))

    def parent_of(pointer: str) -> tuple[Any, str]:
        if not pointer.startswith("/"):
            raise bad_request(f"json patch: invalid path {pointer!r}")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def read(pointer: str) -> Any:
        node, last = parent_of(pointer)
        return node[int(last)] if isinstance(node, list) else node[last]

    for op in operations:
        try:
            kind, path = op["op"], op["path"]
            if kind == "test":
                if read(path) != op.get("value"):
                    raise StoreError(422, "Invalid", f"json patch: test failed at {path}")
                continue
            value = read(op["from"]) if kind in ("move", "copy") else op.get("value")
            if kind in ("remove", "move", "replace"):
                source = op["from"] if kind == "move" else path
                node, last = parent_of(source)
                if isinstance(node, list):
                    node.pop(int(last))
                else:
                    del node[last]
                if kind == "remove":
                    continue
            node, last = parent_of(path)
            if isinstance(node, list):
                node.insert(len(node) if last == "-" else int(last), value)
            else:
                node[last] = value
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise StoreError(422, "Invalid", f"json patch: cannot apply {op!r}: {exc}") from exc
    return doc
