"""HTTP: a URL per customer (templated, each value percent-encoded), a JSON path into the answer, a number.

`$.a.b[0]` paths only (no filters, no scripts). A boolean counts as 1 / 0 (`{"healthy": true}`); a
missing path is "no data"; a timeout, a non-2xx status or an answer that is not JSON is an error."""

from __future__ import annotations

import re
from typing import Any

from upgrader.analysis.checks import AnalysisCheck, HttpQuery
from upgrader.analysis.measurements import Measurement
from upgrader.analysis.providers import DEFAULT_TIMEOUT_SECONDS, Target, bounded_timeout, no_value, value
from upgrader.analysis.providers.web import FetchError, ProviderUnavailable, get_json
from upgrader.analysis.templating import TemplateError, render_url

_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


class HttpProvider:
    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, headers: dict[str, str] | None = None) -> None:
        self._timeout = bounded_timeout(timeout)
        self._headers = dict(headers or {})

    def measure(self, check: AnalysisCheck, target: Target) -> Measurement:
        assert isinstance(check.query, HttpQuery), "an http check's query is a URL and a JSON path"
        try:
            url = render_url(check.query.url, target.values)
        except TemplateError as exc:
            return no_value(check, target, check.query.url, f"template: {exc}")
        shown = f"GET {url} {check.query.json_path}"
        try:
            document = get_json(url, timeout=self._timeout, headers=self._headers)
            return value(check, target, shown, read_number(document, check.query.json_path))
        except FetchError as exc:
            return no_value(check, target, shown, str(exc), retryable=isinstance(exc, ProviderUnavailable))


def read_number(document: Any, path: str) -> float:
    """The number at `path` (`$`, `.key`, `[index]` steps) of a JSON document; FetchError when absent."""
    current = document
    for key, index in _STEP.findall(path[1:]):
        if key and isinstance(current, dict) and key in current:
            current = current[key]
        elif index and isinstance(current, list) and int(index) < len(current):
            current = current[int(index)]
        else:
            raise FetchError(f"no data at {path}")
    if isinstance(current, bool):
        return 1.0 if current else 0.0
    if isinstance(current, int | float):
        return float(current)
    if isinstance(current, str):
        try:
            return float(current)
        except ValueError:
            pass
    raise FetchError(f"{path} is not a number")
