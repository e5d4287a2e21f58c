"""Does an event file match what its function is given? Checked before any invocation; a problem names the field.

An API event is an API Gateway REST proxy event (Powertools' APIGatewayProxyEventModel, which real API Gateway
events satisfy), for a route its function serves (the routes of the local API server, the template's), with the
path parameters its path gives, and a body the route's request schema in docs/openapi.json accepts. The other
functions' events are checked against what the local engine passes (tests/e2e/test_events.py).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from upgradectl.local.functions import API_FUNCTIONS, ROOT

OPENAPI = ROOT / "docs" / "openapi.json"


def event_problems(name: str, function: str, events: Path) -> list[str]:
    """What is wrong with events/<name>.json as an event of functions/<function>, each naming its field."""
    try:
        event = json.loads((events / f"{name}.json").read_text())
    except json.JSONDecodeError as exc:
        return [f"events/{name}.json: not JSON: {exc}"]
    if not isinstance(event, dict):
        return [f"events/{name}.json: not a JSON object"]
    problems = api_event_problems(event, function) if function in API_FUNCTIONS else []
    return [f"events/{name}.json: {problem}" for problem in problems]


def api_event_problems(event: dict[str, Any], function: str) -> list[str]:
    from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel
    from pydantic import ValidationError

    from upgradectl.local.gateway import ROUTES, match_route

    try:
        APIGatewayProxyEventModel.model_validate(event)
    except ValidationError as exc:
        return [f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors()]
    method, resource, path = event["httpMethod"], event["resource"], event["path"]
    served = [r for r in ROUTES if r.function == function]
    if not any(r.method == method and r.resource == resource for r in served):
        return [f"resource: {method} {resource} is not a route of {function}"]
    route, params, _ = match_route(method, path)
    if route is None or route.resource != resource:
        return [f"path: {path} is not a path of {method} {resource}"]
    if (event.get("pathParameters") or {}) != params:
        return [f"pathParameters: {event.get('pathParameters')!r}, the path gives {params!r}"]
    return body_problems(event.get("body"), method, resource)


def body_problems(body: str | None, method: str, resource: str) -> list[str]:
    """The body against the route's JSON request schema in docs/openapi.json (none: any body is the route's)."""
    import jsonschema

    operation = _openapi()["paths"].get(resource, {}).get(method.lower(), {})
    request = operation.get("requestBody")
    if request is None:
        return []
    if body is None:
        return ["body: missing (the route requires one)"] if request.get("required") else []
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        return [f"body: not JSON: {exc}"]
    schema = {**request["content"]["application/json"]["schema"], "components": _openapi()["components"]}
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"body{''.join(f'.{part}' for part in error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


@lru_cache(maxsize=1)
def _openapi() -> dict[str, Any]:
    return dict(json.loads(OPENAPI.read_text()))
