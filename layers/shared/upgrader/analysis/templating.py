"""`{{customerId}}`, `{{namespace}}`, `{{component}}`, `{{version}}`, `{{since}}` in an analysis query.

A variable that does not exist is refused (at deploy time, by `variables_in` through the check's
validation, and again when rendering). A value never changes the query's structure:

- PromQL: a value goes only inside a quoted string ("..." or '...'), escaped as Go escapes that quote
  (backslash, the quote, control characters), and regex-escaped when the string is the right side of
  a `=~` / `!~` matcher, so `cust"} or vector(1) #` stays one label value. `{{since}}` is the one
  variable allowed outside a string: it renders as a duration (`300s`, digits only) for a range selector.
- URLs: each value percent-encoded (no `/`, `?`, `#` or `@` survives), `{{since}}` as RFC 3339 UTC.
- CloudWatch: a value is inserted as it is only when it is made of `[A-Za-z0-9_.:/-]` (dimension values
  and alarm names); anything else is refused, so metric math cannot be altered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from upgrader.infra.timestamps import iso_seconds

VARIABLES = ("customerId", "namespace", "component", "version", "since")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_SAFE_PLAIN = re.compile(r"^[A-Za-z0-9_.:/-]*$")
_REGEX_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}])")


class TemplateError(ValueError):
    """A query template that cannot be rendered safely: an unknown variable, a misplaced one, a bad value."""


@dataclass(frozen=True, slots=True)
class TemplateValues:
    """What a query is rendered with, for one customer at one time."""

    customer_id: str
    namespace: str
    component: str
    version: str
    since: datetime  # the start of the window measured (the wave's end, or the bake's start)
    now: datetime

    def as_text(self) -> dict[str, str]:
        return {"customerId": self.customer_id, "namespace": self.namespace, "component": self.component,
                "version": self.version, "since": iso_seconds(self.since)}  # fmt: skip

    def window_seconds(self) -> int:
        return max(1, int((self.now - self.since).total_seconds()))


def variables_in(template: str) -> list[str]:
    """The variables a template uses, in order; raises TemplateError for an unknown one or an unclosed `{{`."""
    names = [match.group(1) for match in _PLACEHOLDER.finditer(template)]
    unknown = [name for name in names if name not in VARIABLES]
    if unknown:
        raise TemplateError(f"unknown template variable {{{{{unknown[0]}}}}} (known: {', '.join(VARIABLES)})")
    if "{{" in _PLACEHOLDER.sub("", template) or "}}" in _PLACEHOLDER.sub("", template):
        raise TemplateError("an unclosed {{ or a stray }} (a variable is written {{name}})")
    return names


def render_url(template: str, values: TemplateValues) -> str:
    """A URL with every value percent-encoded."""
    variables_in(template)
    text = values.as_text()
    return _PLACEHOLDER.sub(lambda m: quote(text[m.group(1)], safe=""), template)


def render_plain(template: str, values: TemplateValues) -> str:
    """A CloudWatch dimension value, alarm name or expression: values only from a safe alphabet."""
    variables_in(template)
    text = values.as_text()

    def value(match: re.Match[str]) -> str:
        found = text[match.group(1)]
        if not _SAFE_PLAIN.match(found):
            raise TemplateError(f"{{{{{match.group(1)}}}}} = {found!r} has characters a CloudWatch query may not take")
        return found

    return _PLACEHOLDER.sub(value, template)


def render_promql(template: str, values: TemplateValues) -> str:
    """PromQL with every value quoted and escaped where it stands (see the module's docstring)."""
    variables_in(template)
    text = values.as_text()
    out: list[str] = []
    quote_char: str | None = None  # the string we are in, if any
    string_start = 0
    i = 0
    while i < len(template):
        match = _PLACEHOLDER.match(template, i)
        if match:
            name = match.group(1)
            if quote_char is None:
                if name != "since":
                    raise TemplateError(
                        f'{{{{{name}}}}} must stand inside a quoted string, e.g. label="{{{{{name}}}}}"'
                    )
                out.append(f"{values.window_seconds()}s")
            elif quote_char == "`":
                raise TemplateError(f'{{{{{name}}}}} cannot stand in a `raw` string (no escaping there): use "..."')
            else:
                value = text[name]
                if _is_regex_matcher(template, string_start):
                    value = _REGEX_SPECIAL.sub(r"\\\1", value)
                out.append(_go_escape(value, quote_char))
            i = match.end()
            continue
        char = template[i]
        if quote_char is None and char in "\"'`":
            quote_char, string_start = char, i
        elif quote_char is not None and char == "\\" and quote_char != "`":
            out.append(template[i : i + 2])
            i += 2
            continue
        elif char == quote_char:
            quote_char = None
        out.append(char)
        i += 1
    return "".join(out)


def _is_regex_matcher(template: str, quote_at: int) -> bool:
    return template[:quote_at].rstrip().endswith(("=~", "!~"))


def _go_escape(value: str, quote_char: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(quote_char, "\\" + quote_char)
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return "".join(c if c >= " " else f"\\x{ord(c):02x}" for c in escaped)
