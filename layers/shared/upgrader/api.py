"""What every API function shares: the resolver, error mapping in one place, caller identity."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from upgrader.errors import UpgradeError

logger = Logger()


def build_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        errors = [_describe(err) for err in exc.errors()]
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return _json(422, {"message": f"invalid request: {message}", "errors": errors})

    @app.exception_handler(UpgradeError)
    def _domain(exc: UpgradeError) -> Response:
        if exc.http_status >= 500:
            logger.warning("request failed", extra={"error": type(exc).__name__, "detail": exc.message})
        return _json(exc.http_status, {"message": exc.message, "error": type(exc).__name__})

    @app.not_found
    def _not_found(_: Exception) -> Response:
        return _json(404, {"message": f"no route {app.current_event.http_method} {app.current_event.path}"})

    return app


def caller_identity(app: APIGatewayRestResolver) -> str | None:
    """Who signed the request (API Gateway's AWS_IAM authorizer fills requestContext.identity)."""
    identity = app.current_event.request_context.identity
    return identity.user_arn or identity.caller or identity.user or None


def _describe(err: dict[str, Any]) -> dict[str, Any]:
    kind = str(err.get("type", "value_error"))
    if kind == "json_invalid":
        return {"field": "body", "message": "body is not valid JSON", "type": kind}
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or str((err.get("loc") or ["request"])[0])
    message = err.get("msg") or _MESSAGES.get(kind, kind)
    if kind == "string_pattern_mismatch":
        key = next((p for p in reversed(loc) if p in _PATTERN_MESSAGES), "")
        message = _PATTERN_MESSAGES.get(key, message)
    return {"field": field, "message": message, "type": kind}


_PATTERN_MESSAGES = {
    "version": "must be an image tag: letters, digits, '_', '.', '-' only, at most 128 characters, "
    "not starting with '.' or '-'",
    "customerIds": "customer ids are ASCII letters, digits, '_' and '-', at most 63 characters",
    "customerId": "customer ids are ASCII letters, digits, '_' and '-', at most 63 characters",
    "upgradeId": "upgrade ids are positive whole numbers",
    "jobId": "job ids are execution names: letters, digits, '_' and '-', at most 80 characters",
}


_MESSAGES = {
    "missing": "field required",
    "json_invalid": "body is not valid JSON",
    "extra_forbidden": "unknown field",
    "string_pattern_mismatch": "value has characters or a length that are not allowed",
}


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)
