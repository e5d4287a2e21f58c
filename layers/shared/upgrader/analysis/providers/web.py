"""One bounded GET of a JSON document (urllib): the Prometheus and HTTP providers' transport."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from upgrader.analysis.providers import MAX_ANSWER_BYTES

Signer = Callable[[str, dict[str, str]], dict[str, str]]  # (url, headers) -> headers to send


class FetchError(Exception):
    """The answer is missing or unusable; the message is safe to store (no URL query, no header)."""


class ProviderUnavailable(FetchError):
    """No answer this time (a timeout, a refused connection, a 5xx or a 429): worth another try."""


def get_json(url: str, *, timeout: float, headers: dict[str, str] | None = None, signer: Signer | None = None) -> Any:
    """GET `url` and parse its JSON body; FetchError for a timeout, a refused connection, a non-2xx status,
    a body over MAX_ANSWER_BYTES or one that is not JSON."""
    sent = {"Accept": "application/json", **(headers or {})}
    if signer is not None:
        sent = signer(url, sent)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FetchError("only http:// and https:// URLs are fetched")
    request = urllib.request.Request(url, headers=sent, method="GET")  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) URLs only (the check's pattern, the provider's base URL)
            body = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise ProviderUnavailable(f"HTTP {exc.code}") from None
        raise FetchError(f"HTTP {exc.code}") from None
    except TimeoutError:
        raise ProviderUnavailable(f"timeout after {timeout:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise ProviderUnavailable(f"timeout after {timeout:g} s") from None
        raise ProviderUnavailable(f"unreachable: {type(reason).__name__}") from None
    except (ConnectionError, OSError, http.client.HTTPException) as exc:
        raise ProviderUnavailable(f"unreachable: {type(exc).__name__}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise FetchError(f"answer over {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FetchError("the answer is not JSON") from None
