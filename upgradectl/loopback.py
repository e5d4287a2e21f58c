"""Which requests a local server acting with the operator's authority answers (the local stack, the console).

A browser lets any web page send "simple" requests to localhost: a GET, or a POST whose body is text,
a form or nothing, with no custom header and no preflight (fetch `mode: "no-cors"`, a form, an
image). Its answer stays unreadable to the page, but the request has done its work. Three rules close
that door for the servers on 127.0.0.1:

- **Host** must be a loopback name (`localhost`, `127.x.x.x`, `[::1]`): a page whose own name was
  rebound to 127.0.0.1 (DNS rebinding) is same-origin with the server in the browser's eyes, and only
  its Host gives it away.
- **Origin**, when the browser sends one, must be the server's own (`http://<Host>`): another site,
  another port of the same host and `null` (sandboxed frames, files) are other origins.
- **Writes are JSON**: every POST, PATCH and DELETE, with a body or without, carries
  `Content-Type: application/json`. A page can send that header to another origin only after a CORS
  preflight, which these servers never grant; curl and the CLI just send it.

One exception keeps the specification's own commands working on the local stack: a bodiless write
without any Content-Type (`curl -X POST .../continue`) is answered when the request carries none of
the headers every browser adds to a POST, PATCH or DELETE (`Origin`, `Sec-Fetch-Site`,
`Sec-Fetch-Mode`). Browsers send `Origin` with every request whose method is not GET or HEAD (the
Fetch standard; `null` when they hide it), so no web page can send such a request; a program on this
machine could call the stack anyway. The console proxy, which signs with the operator's AWS
credentials, makes no exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from upgrader.infra.hosts import host_name as host_name  # re-exported: the loopback checks import it from here
from upgrader.infra.hosts import is_loopback_host as is_loopback_host

JSON = "application/json"
SAFE_METHODS = frozenset({"GET", "HEAD"})
JSON_HEADER_HINT = f"-H 'Content-Type: {JSON}'"


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    message: str

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's Origin header is the origin the request was addressed to (scheme http or https)."""
    origin, host = origin.strip().lower(), host.strip().lower()
    return bool(host) and origin in (f"http://{host}", f"https://{host}")


def origin_refusal(headers: Message) -> Refusal | None:
    """403 when the request comes from another web page: an Origin that is not this server's own."""
    origin = headers.get("Origin")
    if origin is None or same_origin(origin, headers.get("Host") or ""):
        return None
    return Refusal(
        403,
        "CrossOrigin",
        f"requests from other web pages are refused (Origin {origin[:100]!r} is not this server's own)",
    )


def local_refusal(headers: Message, server: str) -> Refusal | None:
    """421 for a Host that is not a loopback name, 403 for another page's Origin; None when both are ours."""
    host = headers.get("Host")
    if not is_loopback_host(host):
        shown = repr(host[:100]) if host is not None else "none"
        return Refusal(
            421,
            "MisdirectedRequest",
            f"{server} answers only requests addressed to localhost, 127.0.0.1 or [::1] (Host: {shown})",
        )
    return origin_refusal(headers)


BROWSER_HEADERS = ("Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode")


def is_bare_non_browser_write(headers: Message) -> bool:
    """A write with no body, no Content-Type and none of the headers a browser adds to every POST: curl's
    `curl -X POST URL`, which no web page can send (see the module's docstring)."""
    if headers.get("Content-Type") is not None or headers.get("Transfer-Encoding") is not None:
        return False
    if (headers.get("Content-Length") or "0").strip() != "0":
        return False
    return all(headers.get(name) is None for name in BROWSER_HEADERS)


def json_write_refusal(method: str, headers: Message, *, allow_bare_non_browser: bool = False) -> Refusal | None:
    """415 for a POST, PATCH or DELETE (body or not) without `Content-Type: application/json`; with
    `allow_bare_non_browser`, a bodiless write no browser can send passes (the local stack's spec commands)."""
    if method in SAFE_METHODS:
        return None
    sent = headers.get("Content-Type")
    if sent is not None and sent.split(";", 1)[0].strip().lower() == JSON:
        return None
    if allow_bare_non_browser and is_bare_non_browser_write(headers):
        return None
    what = "without a Content-Type" if sent is None else f"with Content-Type {sent[:100]!r}"
    return Refusal(
        415,
        "JsonContentTypeRequired",
        f"{method} {what} is refused: send the header 'Content-Type: {JSON}' with every POST, PATCH and "
        f"DELETE, with a body or without (curl: {JSON_HEADER_HINT}); it keeps other web pages from sending them",
    )
