"""The web console: one static page (HTML, CSS, a small JS module; no build step, no CDN) that reads and
steers the upgrade API of the origin serving it.

Two servers serve it: the local stack (`upgradectl/local/server.py`, at `/admin/queues` and `/`), and
`upgrade-customers console` (`upgradectl/console/proxy.py`), which proxies `/api/*` to the API in AWS,
signing each request with SigV4. Both answer `/console/config.json`: who the console acts as and
whether it is read-only (the proxy only to the browser that signed in with its link).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from upgrader.contract.strategies import console_table

from upgradectl.console.api_reference import is_reference_path, reference_asset

PAGE_PATHS = frozenset({"/", "/admin/queues", "/admin/queues/"})
CONFIG_PATH = "/console/config.json"
# Generated from the strategies' registry when asked: the wave labels and budget facts the page shows.
STRATEGIES_PATH = "/console/strategies.js"
_ASSETS = {
    "/console/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console/waves.js": ("waves.js", "text/javascript; charset=utf-8"),
    "/console/analysis.js": ("analysis.js", "text/javascript; charset=utf-8"),
    "/console/images.js": ("images.js", "text/javascript; charset=utf-8"),
    "/console/console.css": ("console.css", "text/css; charset=utf-8"),
    "/console/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
# The page loads nothing from elsewhere and runs no inline script; nobody may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def is_console_path(path: str) -> bool:
    return path in PAGE_PATHS or path in _ASSETS or path in (CONFIG_PATH, STRATEGIES_PATH) or is_reference_path(path)


def strategies_module() -> str:
    """/console/strategies.js: what the console needs of each strategy (upgrader.contract.strategies)."""
    table = json.dumps(console_table(), indent=2, sort_keys=True)
    return f"// Generated from upgrader.contract.strategies.console_table(); not a file.\nexport const STRATEGIES = {table};\n"


def asset(path: str) -> Asset | None:
    """The page or one of its files for a request path; None for any other path."""
    if path == STRATEGIES_PATH:
        return Asset(strategies_module().encode(), "text/javascript; charset=utf-8")
    reference = reference_asset(path)  # the API reference at /docs (upgradectl.console.api_reference)
    if reference is not None:
        return Asset(*reference)
    if path in PAGE_PATHS:
        name, content_type = "index.html", "text/html; charset=utf-8"
    elif path in _ASSETS:
        name, content_type = _ASSETS[path]
    else:
        return None
    return Asset(resources.files(__package__).joinpath("static", name).read_bytes(), content_type)
