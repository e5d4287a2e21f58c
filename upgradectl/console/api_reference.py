"""The interactive API reference at `/docs`: Swagger UI over the OpenAPI document the code generates.

Swagger UI's files come from the PyPI package `swagger-ui-py` (no CDN, nothing fetched from elsewhere); the
page's own script is a file (`reference.js`), so the console's strict Content-Security-Policy holds here too.
The document served is `upgradectl.openapi.build_document()` (what `make openapi` writes to docs/openapi.json)
with one server, this origin: "Try it out" sends its requests to the server that served the page (the local
stack, or `upgrade-customers console`, which signs them), never to AWS directly and never to another host.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

PAGE_PATHS = frozenset({"/docs", "/docs/"})
DOCUMENT_PATH = "/docs/openapi.json"
_OWN = {"/docs/reference.js": ("reference.js", "text/javascript; charset=utf-8")}
# Swagger UI's own files, from the swagger_ui package's static folder
_SWAGGER = {
    "/docs/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "/docs/favicon-32x32.png": ("favicon-32x32.png", "image/png"),
}
SERVER = {"url": "/", "description": "this server (the local stack, or upgrade-customers console signing for you)"}


def is_reference_path(path: str) -> bool:
    return path in PAGE_PATHS or path == DOCUMENT_PATH or path in _OWN or path in _SWAGGER


def reference_asset(path: str) -> tuple[bytes, str] | None:
    """(body, content type) of the reference page, its document or one of its files; None for another path."""
    if path in PAGE_PATHS:
        return _static("api-reference.html"), "text/html; charset=utf-8"
    if path == DOCUMENT_PATH:
        return document(), "application/json"
    if path in _OWN:
        name, content_type = _OWN[path]
        return _static(name), content_type
    if path in _SWAGGER:
        name, content_type = _SWAGGER[path]
        return resources.files("swagger_ui").joinpath("static", name).read_bytes(), content_type
    return None


@functools.cache
def document() -> bytes:
    """The OpenAPI document with this origin as its only server (built once: it imports every API function)."""
    from upgradectl.openapi import build_document  # the API functions' routes: loaded on the first request only

    doc = build_document()
    doc["servers"] = [SERVER]
    return json.dumps(doc, sort_keys=True).encode("utf-8")


def _static(name: str) -> bytes:
    return resources.files("upgradectl.console").joinpath("static", name).read_bytes()
