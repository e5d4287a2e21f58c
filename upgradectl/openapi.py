"""Generate the OpenAPI document from the API functions' own routes (`make openapi`).

Powertools writes the paths, parameters and models from the code. This module then states what
the code around the routes does, for every operation alike (new routes included):

- SigV4 is a security scheme (API Gateway's `awsSigv4` extension) required by every operation;
- every error status has the error body (`ErrorResponse`), never the success model; 403, answered by API
  Gateway before the API sees the request, has API Gateway's own body (`GatewayError`);
- every status the API can answer is listed: the route's own (404, 409, ...), the validation 422, the
  400/415 of a body that is not one JSON object (any route: one that takes no body refuses one), 413
  where a body is accepted, and what API Gateway and the runtime answer on any route;
- a query or header parameter or a request body is never `null` (none can be sent as JSON null).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from upgrader.contract.models import ErrorResponse

from upgradectl.local.functions import API_FUNCTIONS, load_function

TITLE = "Customer upgrades API"
VERSION = "1.0.0"
ERROR_SCHEMA = "ErrorResponse"
# API Gateway's own 403 body: `message` ("Missing Authentication Token", a signature mismatch), but
# `Message` (capital M) when the caller's IAM policy denies the route. Clients must parse both.
GATEWAY_ERROR_SCHEMA = "GatewayError"
GATEWAY_ERROR = {
    "type": "object",
    "title": GATEWAY_ERROR_SCHEMA,
    "description": "API Gateway's answer to a request it refused before the API saw it (403): `message`, or "
    "`Message` for an IAM policy denial",
    "properties": {"message": {"type": "string"}, "Message": {"type": "string"}},
}
GATEWAY_STATUSES = ("403",)
SECURITY_SCHEME = "sigv4"
SECURITY: list[dict[str, list[str]]] = [{SECURITY_SCHEME: []}]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

# What any operation can answer besides its own outcomes.
COMMON_ERRORS = {
    400: "the request body is not one JSON object (not JSON, or a list, a string, a number, a boolean, null; on "
    "every route, one that takes no body included): `errors` names `body`",
    415: "the request body is not application/json",
    403: "missing or invalid SigV4 signature, or the caller's IAM policy does not allow this route (API Gateway)",
    422: "invalid request: `errors` names each invalid parameter or field",
    429: "too many requests (API Gateway throttling); retry with back-off",
    500: "unexpected error",
    502: "the function failed (API Gateway)",
    503: "the database or Step Functions is unavailable; nothing was changed, retry",
    504: "the function did not answer in time (API Gateway); the request may or may not have taken effect",
}
BODY_ERRORS = {
    413: "request body too large",
}
RESOURCE_ERROR = (404, "no such resource (see the path parameters)")


def build_document() -> dict[str, Any]:
    app = APIGatewayRestResolver(enable_validation=True)
    for name in API_FUNCTIONS:
        app.include_router(load_function(name).router)
    doc: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title=TITLE,
            version=VERSION,
            summary="Roll a component version out to every customer instance, wave by wave",
            description=(
                "Every route requires AWS Signature Version 4 (API Gateway AWS_IAM authorization). "
                "Upgrade ids are decimal strings; jobId is the Step Functions execution name. "
                "Every error answer is an ErrorResponse."
            ),
        )
    )
    doc["servers"] = [
        {
            "url": "https://{apiId}.execute-api.{region}.amazonaws.com/v1",
            "description": "the deployed API (stage v1)",
            "variables": {
                "apiId": {"default": "abc123", "description": "the RestApi id (stack output ApiUrl)"},
                "region": {"default": "eu-west-1", "description": "the stack's AWS region"},
            },
        },
        {"url": "http://localhost:3100", "description": "the local stack (`make run`), without SigV4"},
    ]
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "AWS Signature Version 4 for the service execute-api (API Gateway AWS_IAM authorization). "
            "OpenAPI has no SigV4 scheme: a generated client signs each request itself, e.g. with the httpx auth "
            "upgradectl.sigv4.SigV4 (docs/reference/api-guide.md: Generated clients)",
            "x-amazon-apigateway-authtype": "awsSigv4",
        }
    }
    doc["security"] = SECURITY
    schemas = components.setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schemas[ERROR_SCHEMA].pop("$defs", {}))
    schemas[GATEWAY_ERROR_SCHEMA] = GATEWAY_ERROR
    for operation in _operations(doc):
        _describe_operation(operation)
    _drop_unreferenced_schemas(doc)
    return doc


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in doc["paths"].values() for method, op in item.items() if method in METHODS]


def _describe_operation(operation: dict[str, Any]) -> None:
    operation["security"] = SECURITY
    for parameter in operation.get("parameters", []):
        if parameter["in"] in ("query", "header"):
            parameter["schema"] = _not_null(parameter["schema"])
    body = operation.get("requestBody")
    if body is not None:
        for media in body["content"].values():
            media["schema"] = _not_null(media["schema"])
    responses: dict[str, Any] = operation["responses"]
    extra = dict(COMMON_ERRORS)
    if any(p["in"] == "path" for p in operation.get("parameters", [])):
        extra.setdefault(*RESOURCE_ERROR)
    if body is not None:
        extra.update(BODY_ERRORS)
    for code, description in extra.items():
        responses.setdefault(str(code), {"description": description})
    for status, response in responses.items():
        if int(status) >= 400:
            if response.get("description") == "Validation Error":  # Powertools' own wording
                response["description"] = COMMON_ERRORS[422]
            schema = GATEWAY_ERROR_SCHEMA if status in GATEWAY_STATUSES else ERROR_SCHEMA
            response["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    operation["responses"] = dict(sorted(responses.items()))


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` as Python says "optional"; in a query string or a JSON body it is simply absent."""
    options = schema.get("anyOf")
    if not options:
        return schema
    kept = [option for option in options if option != {"type": "null"}]
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


def _drop_unreferenced_schemas(doc: dict[str, Any]) -> None:
    """Powertools' own validation-error models are replaced by ErrorResponse: keep only what is used."""
    schemas = doc["components"]["schemas"]
    while True:
        text = json.dumps({key: value for key, value in doc.items() if key != "components"}) + json.dumps(schemas)
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def main() -> int:
    json.dump(build_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
