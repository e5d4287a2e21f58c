"""API Gateway's part of the local REST API: the routes of template.yaml, which route a request takes, and the
REST (v1) proxy event the AWS_IAM-authorised API sends to the route's Lambda handler."""

from __future__ import annotations

import base64
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

STAGE = "local"


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # API Gateway resource path, e.g. /api/upgrades/{upgradeId}/status
    function: str
    pattern: re.Pattern[str]


def _route(method: str, resource: str, function: str) -> Route:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(resource))
    return Route(method, resource, function, re.compile(f"^{regex}$"))


# The routes of template.yaml (docs/contracts.md), in the same order.
ROUTES: tuple[Route, ...] = (
    _route("POST", "/api/upgrades/deploy", "api_deploy"),
    _route("POST", "/api/upgrades/plan", "api_upgrades"),
    _route("GET", "/api/upgrades", "api_upgrades"),
    _route("GET", "/api/upgrades/{upgradeId}/status", "api_upgrades"),
    _route("GET", "/api/upgrades/{upgradeId}/analysis", "api_upgrades"),
    _route("GET", "/api/upgrades/{upgradeId}/logs", "api_upgrades"),
    _route("GET", "/api/upgrades/{upgradeId}/logs/{logId}/output", "api_upgrades"),
    _route("GET", "/api/promotions", "api_upgrades"),
    _route("POST", "/api/upgrades/{upgradeId}/continue", "api_control"),
    _route("POST", "/api/upgrades/{upgradeId}/rollback/{customerId}", "api_control"),
    _route("POST", "/api/upgrades/{upgradeId}/rollback", "api_control"),
    _route("POST", "/api/upgrades/{upgradeId}/abort", "api_control"),
    _route("POST", "/api/upgrades/{upgradeId}/resume", "api_control"),
    _route("GET", "/api/queue/stats", "api_queue"),
    _route("GET", "/api/queue/jobs/{jobId}", "api_queue"),
    # A static path before the parameter at the same depth (API Gateway prefers it too).
    _route("POST", "/api/customers/sync", "api_sync"),
    _route("GET", "/api/customers/sync/{syncId}", "api_customers"),
    _route("GET", "/api/customers", "api_customers"),
    _route("GET", "/api/customers/{customerId}", "api_customers"),
    _route("PATCH", "/api/customers/{customerId}", "api_customers"),
    _route("GET", "/api/fleet", "api_customers"),
    _route("GET", "/api/fleet/images", "api_customers"),
    _route("GET", "/api/compatibility-rules", "api_customers"),
    _route("POST", "/api/compatibility-rules", "api_customers"),
    _route("DELETE", "/api/compatibility-rules/{ruleId}", "api_customers"),
    _route("GET", "/api/promotion-rules", "api_customers"),
    _route("PUT", "/api/promotion-rules/{component}", "api_customers"),
    _route("DELETE", "/api/promotion-rules/{component}", "api_customers"),
    _route("GET", "/api/promotion-rules/{component}/history", "api_customers"),
)


def match_route(method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
    """(route, path parameters, methods allowed on this path). An unknown path allows nothing.

    As in API Gateway, a path that is a static resource (`/api/customers/sync`) is that resource only,
    never a value of a parameter at its place (`/api/customers/{customerId}`)."""
    allowed: list[str] = []
    static = [r for r in ROUTES if "{" not in r.resource and r.pattern.match(path)]
    for route in static or ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, {k: unquote(v) for k, v in found.groupdict().items()}, [route.method]
        allowed.append(route.method)
    return None, {}, allowed


def build_event(
    route: Route,
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    path_params: dict[str, str],
    source_ip: str,
    user_arn: str,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as the AWS_IAM-authorised API sends it to Lambda."""
    multi_query = parse_qs(query, keep_blank_values=True) if query else {}
    try:
        text: str | None = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    path = unquote(raw_path)
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": method,
        "headers": dict(headers) or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.resource,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "accountId": "123456789012",
            "apiId": "local",
            "requestId": str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "protocol": "HTTP/1.1",
            "identity": {
                "userArn": user_arn,
                "caller": user_arn,
                "user": user_arn,
                "accountId": None,
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent") or headers.get("user-agent"),
                "accessKey": None,
            },
        },
        "body": text,
        "isBase64Encoded": encoded,
    }
