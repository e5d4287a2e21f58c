"""Redaction of secrets in text the product stores or sends (helm output, errors, events).

Helm's output is partly the customer's chart's text: NOTES.txt often prints credentials, a `fail` message or
an admission webhook's answer can quote values. Before any of it is stored (PostgreSQL), carried (Step
Functions state) or sent (EventBridge, the webhook, Slack), three things are replaced by ``[redacted]``:

- the release's own secret values: what its Secret objects hold (``data`` decoded, ``stringData``) and the
  values at secret-like keys of its user values (`secret_values_of`), wherever they appear, and their
  base64 forms;
- the value of every ``key: value`` / ``key=value`` pair whose key looks like a credential (password,
  passwd, pwd, secret, token, key, credential, auth, bearer...), quoted or not;
- the password of a URL with credentials (``scheme://user:password@host``), and bearer tokens.

A redactor only removes: it never adds text from the input elsewhere, and redacting twice changes nothing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"
# A known secret shorter than this is not searched for: replacing every "1" or "ok" of an output would
# destroy it and protect nothing (key-like pairs still hide such values).
MIN_SECRET_LENGTH = 4

# The words that make a key secret-like (not a password itself).
SECRET_KEY_WORDS = "|".join((
    "password", "passwd", "passphrase", "pwd", "secret", "token", "api[_-]?key", "apikey", "access[_-]?key",
    "private[_-]?key", "credentials?", "auth", "bearer", "key",
))  # fmt: skip
_KEY = re.compile(rf"(?i)(?:{SECRET_KEY_WORDS})")
# key (a word that contains a credential word), an optional closing quote, = or :, an optional opening quote,
# then the value up to the closing quote (quoted) or up to whitespace, a comma or a semicolon (bare).
_PAIR = re.compile(
    rf"""(?ix)
    (?P<key>[A-Za-z0-9_.-]*(?:{SECRET_KEY_WORDS})[A-Za-z0-9_.-]*)
    (?P<sep>["']?[ \t]*[:=][ \t]*)
    (?:
        (?P<quote>["'])(?P<quoted>[^"'\r\n]*)(?P=quote)
      | (?P<bare>[^\s"',;]+)
    )
    """
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:/@]+):(?P<password>[^\s@/]+)@")
_BEARER = re.compile(r"(?i)\b(?P<word>bearer|basic)(?P<space>\s+)(?P<token>[A-Za-z0-9._~+/-]{8,}=*)")


def _pair(match: re.Match[str]) -> str:
    value = match.group("quoted") if match.group("quote") else match.group("bare")
    if not value or value.startswith("[redacted") or value.lower() in ("bearer", "basic"):
        return match.group(0)  # already redacted, or a scheme whose token _BEARER redacted
    if match.group("quote"):
        return f"{match.group('key')}{match.group('sep')}{match.group('quote')}{REDACTED}{match.group('quote')}"
    return f"{match.group('key')}{match.group('sep')}{REDACTED}"


class Redactor:
    """Redacts the patterns above, plus the given known secret values (a release's)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known: set[str] = set()
        for value in secrets:
            if len(value) < MIN_SECRET_LENGTH:
                continue
            known.add(value)
            encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
            known.add(encoded)
            known.add(encoded.rstrip("="))
        self._known = sorted(known, key=len, reverse=True)  # a longer value first: no partial leftovers

    def text(self, value: str | None) -> str | None:
        """`value` with every secret replaced by [redacted] (None stays None)."""
        if not value:
            return value
        for secret in self._known:
            value = value.replace(secret, REDACTED)
        value = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", value)
        value = _BEARER.sub(lambda m: f"{m.group('word')}{m.group('space')}{REDACTED}", value)
        return _PAIR.sub(_pair, value)

    def value(self, value: Any) -> Any:
        """Every string inside a JSON-like value redacted (dicts and lists walked; keys kept)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value


PATTERNS = Redactor()


def redact(value: str | None) -> str | None:
    """The patterns only (no known values): for text whose release is not at hand."""
    return PATTERNS.text(value)


def secret_values_of(record: Mapping[str, Any]) -> frozenset[str]:
    """The secret values a decoded Helm release record holds: the ``data`` (decoded) and ``stringData``
    of every Secret in its rendered manifest, and every scalar of its user values at a secret-like key."""
    found: set[str] = set()
    manifest = record.get("manifest")
    if isinstance(manifest, str) and "Secret" in manifest:
        found |= _manifest_secrets(manifest)
    config = record.get("config")
    if isinstance(config, Mapping):
        found |= _secret_like_values(config)
    return frozenset(v for v in found if len(v) >= MIN_SECRET_LENGTH)


def _manifest_secrets(manifest: str) -> set[str]:
    import yaml  # the cluster workers' layer has it (a dependency of the kubernetes client)

    found: set[str] = set()
    try:
        documents = list(yaml.safe_load_all(manifest))
    except yaml.YAMLError:
        return found  # a manifest helm could not have applied: nothing to learn from it
    for document in documents:
        if not isinstance(document, Mapping) or document.get("kind") != "Secret":
            continue
        for key in ("stringData", "data"):
            entries = document.get(key)
            if not isinstance(entries, Mapping):
                continue
            for item in entries.values():
                if not isinstance(item, str | int | float):
                    continue
                text = str(item)
                if key == "data":
                    try:
                        text = base64.b64decode(text, validate=True).decode("utf-8")
                    except (ValueError, UnicodeDecodeError):
                        found.add(text)  # not base64 text: keep the raw value
                        continue
                found.add(text)
    return found


def _secret_like_values(values: Mapping[str, Any], secret_parent: bool = False) -> set[str]:
    found: set[str] = set()
    for key, item in values.items():
        secret = secret_parent or bool(_KEY.search(str(key)))
        if isinstance(item, Mapping):
            found |= _secret_like_values(item, secret)
        elif isinstance(item, list):
            for element in item:
                if isinstance(element, Mapping):
                    found |= _secret_like_values(element, secret)
                elif secret and isinstance(element, str | int | float) and not isinstance(element, bool):
                    found.add(str(element))
        elif secret and isinstance(item, str | int | float) and not isinstance(item, bool):
            found.add(str(item))
    return found
