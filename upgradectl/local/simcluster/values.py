"""Helm 3's values semantics, as the simulated helm applies them.

- ``--set`` / ``--set-string`` expressions (Helm's ``strvals``): ``a.b.c=v,d=w`` builds nested maps;
  ``--set`` types its values (true/false, null, integers), ``--set-string`` keeps strings.
- ``coalesce_tables``: ``chartutil.CoalesceTables`` (the first table wins; a null in it deletes the
  key the second one has).
- ``coalesce_values``: ``chartutil.CoalesceValues`` (user values over the chart's defaults: what
  ``helm get values --all`` prints and what the templates see).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Values = dict[str, Any]


class ValuesError(ValueError):
    """A --set expression Helm's parser refuses."""


def deep_copy(values: Mapping[str, Any] | None) -> Values:
    return copy.deepcopy(dict(values or {}))


def nest(values: Mapping[str, Any] | None) -> Values:
    """Dotted keys (``{"api.image.tag": "v1"}``) and nested maps, as nested maps (deep-merged in order);
    leaf values kept as given."""
    result: Values = {}
    for key, value in (values or {}).items():
        node = result
        parts = str(key).split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        leaf = parts[-1]
        if isinstance(value, Mapping):
            existing = node.get(leaf)
            node[leaf] = _merge(existing if isinstance(existing, dict) else {}, nest(value))
        else:
            node[leaf] = value
    return result


def _merge(into: Values, other: Values) -> Values:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def flatten(values: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested values as dotted keys (leaves only): ``{"api": {"image": {"tag": "v1"}}}`` -> ``{"api.image.tag": "v1"}``."""
    flat: dict[str, Any] = {}
    for key, value in (values or {}).items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


# --- --set / --set-string (strvals) -------------------------------------------------------------------


def _typed(raw: str, as_string: bool) -> Any:
    """strvals.typedVal: --set-string keeps text; --set makes true/false/null/integers typed."""
    if as_string:
        return raw
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "null":
        return None
    if raw == "0":
        return 0
    if raw and raw[0] != "0":
        try:
            number = int(raw, 10)
        except ValueError:
            return raw
        if -(2**63) <= number < 2**63 and raw.lstrip("+-").isdigit():
            return number
    return raw


def _split_unescaped(text: str, separator: str) -> list[str]:
    """Split on `separator` not preceded by a backslash; the backslash escapes are kept for later."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, escaped = [], False
    for char in text:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def _set_path(target: Values, key: str, value: Any) -> None:
    parts = [_unescape(p) for p in _split_unescaped(key, ".")]
    if any(not p for p in parts):
        raise ValuesError(f'key "{key}" has no value')
    node: Any = target
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        name, list_index = _list_part(part)
        if list_index is None:
            if last:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = node[name] = {}
                node = child
            continue
        items = node.get(name)
        if not isinstance(items, list):
            items = node[name] = []
        while len(items) <= list_index:
            items.append(None)
        if last:
            items[list_index] = value
        else:
            if not isinstance(items[list_index], dict):
                items[list_index] = {}
            node = items[list_index]


def _list_part(part: str) -> tuple[str, int | None]:
    """``name[3]`` -> ("name", 3); a plain key -> (key, None)."""
    if part.endswith("]") and "[" in part:
        name, _, rest = part.partition("[")
        digits = rest[:-1]
        if not digits.isdigit():
            raise ValuesError(f"failed to parse index: {digits!r}")
        if int(digits) > 65536:
            raise ValuesError(f"index of {digits} is greater than maximum supported index value")
        return name, int(digits)
    return part, None


def parse_set(expression: str, into: Values, *, as_string: bool) -> Values:
    """Apply one ``--set``/``--set-string`` argument (``a.b=c,d=e``) to `into` (Helm's ParseInto)."""
    for assignment in _split_unescaped(expression, ","):
        if assignment == "":
            continue
        key, sep, raw = assignment.partition("=")
        if not sep:
            raise ValuesError(f'key "{_unescape(key)}" has no value')
        _set_path(into, key, _typed(_unescape(raw), as_string))
    return into


# --- coalescing (chartutil) ----------------------------------------------------------------------------


def coalesce_tables(dst: Values | None, src: Mapping[str, Any] | None) -> Values:
    """chartutil.CoalesceTables: `dst` wins over `src`, tables merge deeply, a null in `dst` deletes
    the key `src` has. Mutates and returns `dst` (a fresh dict when `dst` is None)."""
    if src is None:
        return dst if dst is not None else {}
    if dst is None:
        return deep_copy(src)
    for key, value in src.items():
        if key in dst and dst[key] is None:
            del dst[key]
        elif key not in dst:
            dst[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(dst[key], dict):
            coalesce_tables(dst[key], value)
    return dst


def coalesce_values(chart_values: Mapping[str, Any] | None, config: Mapping[str, Any] | None) -> Values:
    """chartutil.CoalesceValues(chart, config) for a chart without dependencies: the user's values over
    the chart's defaults; a null user value removes the default. Returns a new dict."""
    result = deep_copy(config)
    for key, default in (chart_values or {}).items():
        if key not in result:
            result[key] = copy.deepcopy(default)
        elif result[key] is None:
            del result[key]
        elif isinstance(result[key], dict) and isinstance(default, Mapping):
            coalesce_tables(result[key], default)
    return result
