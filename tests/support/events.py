"""The sample events of events/ double as test fixtures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


def api_event(
    name: str,
    *,
    path: str | None = None,
    path_params: dict[str, str] | None = None,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    user_arn: str | None = None,
) -> dict[str, Any]:
    """An API Gateway event from events/<name>.json with some parts replaced."""
    event = load_event(name)
    if path is not None:
        event["path"] = path
        event["requestContext"]["path"] = "/v1" + path
    if path_params is not None:
        event["pathParameters"] = path_params
    if body is not None:
        event["body"] = json.dumps(body)
    if raw_body is not None:
        event["body"] = raw_body
    if query is not None:
        event["queryStringParameters"] = query or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    if user_arn is not None:
        event["requestContext"]["identity"]["userArn"] = user_arn
    return event
