"""What every API function shares: the resolver, error mapping in one place, caller identity."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from upgrader.contract.trains import DuplicateKey, refuse_duplicate_keys
from upgrader.images.preflight import ImagesRefused
from upgrader.infra.errors import InvalidValue, UpgradeError
from upgrader.promotion.rules import NotPromoted
from upgrader.rollout.compatibility import IncompatibleVersions

logger = Logger()

BODY_NOT_AN_OBJECT = "the request body must be a JSON object"
NO_BODY_TAKEN = "this route takes no request body (send none, or {})"


class BadRequestBody(Exception):
    """A request body that is not one JSON object (not JSON at all, a list, a string, a number, a
    boolean, null): a 400 naming `body`, answered before any field is looked at."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class JsonObjectBodyValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation, with the body taken as this API defines it, on every route.

    Every request body of this API is one JSON object sent as application/json. Powertools alone
    would unwrap a JSON list to its first element (`[{"rollback": true}]` validated as the object),
    take `null` for "no body", parse form-encoded bodies into strings, and not look at the body at all
    on a route that takes none (`[{"x": 1}]` sent to /continue released the gate). Here: no body at
    all means no body; anything else must be a JSON object (400 naming `body`; 415 for another media
    type, or none), and a route that takes no body accepts only an empty one (`{}`; any field in it is a
    422 naming the field).
    """

    def handler(self, app: Any, next_middleware: Any) -> Any:
        if not app.context["_route"].dependant.body_params:
            self._refuse_any_body(app)
        return super().handler(app, next_middleware)

    def _refuse_any_body(self, app: Any) -> None:
        """A route without a request body: none, or `{}`; what else arrives is refused, never ignored."""
        body = self._get_body(app)
        if body:
            raise RequestValidationError(
                [{"type": "extra_forbidden", "loc": ("body", key), "msg": NO_BODY_TAKEN, "input": {}} for key in body]
            )

    def _get_body(self, app: Any) -> Any:  # a JSON object, or None when there is no body
        event = app.current_event
        if not event.body:
            return None
        content_type = (event.headers.get("content-type") or "").strip().lower()
        if not content_type.startswith(content_types.APPLICATION_JSON):  # no Content-Type is not JSON either
            raise RequestUnsupportedContentType(
                "Unsupported content type",
                errors=[
                    {
                        "type": "unsupported_content_type",
                        "loc": ("body",),
                        "msg": f"send {content_types.APPLICATION_JSON}, not {content_type or 'no Content-Type'}",
                    }
                ],
            )
        try:
            # A key given twice is refused naming it (json.loads alone keeps the last: a train naming a component
            # twice would silently deploy one of the two versions).
            body = json.loads(event.decoded_body, object_pairs_hook=refuse_duplicate_keys)
        except DuplicateKey:
            raise
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadRequestBody("json_invalid", "body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise BadRequestBody("model_type", f"{BODY_NOT_AN_OBJECT}, not {_json_kind(body)}")
        return body


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def build_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)
    # Powertools runs this instance first on every validated route (it builds it only when absent).
    app._request_validation_middleware = JsonObjectBodyValidation()

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        errors = [_describe(err) for err in exc.errors()]
        message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return _json(422, {"message": f"invalid request: {message}", "errors": errors})

    @app.exception_handler(BadRequestBody)
    def _bad_body(exc: BadRequestBody) -> Response:
        errors = [{"field": "body", "message": exc.message, "type": exc.kind}]
        return _json(400, {"message": f"invalid request: body: {exc.message}", "errors": errors})

    @app.exception_handler(RequestUnsupportedContentType)
    def _media_type(exc: RequestUnsupportedContentType) -> Response:
        errors = [_describe(err) for err in exc.errors()]
        return _json(415, {"message": f"unsupported media type: {errors[0]['message']}", "errors": errors})

    @app.exception_handler(UpgradeError)
    def _domain(exc: UpgradeError) -> Response:
        if exc.http_status >= 500:
            logger.warning("request failed", extra={"error": type(exc).__name__, "detail": exc.message})
        answer: dict[str, Any] = {"message": exc.message, "error": type(exc).__name__}
        if isinstance(exc, InvalidValue):  # named like a validation error: the field and why
            answer["errors"] = [{"field": exc.field, "message": exc.reason, "type": "value_error"}]
        if isinstance(exc, IncompatibleVersions):  # every customer and the rule it would break
            answer["incompatible"] = exc.customers
        if isinstance(exc, NotPromoted):  # the ring refused and what its previous ring's evidence lacks
            answer["promotion"] = exc.promotion.as_dict()
        if isinstance(exc, ImagesRefused):  # every customer's image the deploy cannot start without
            answer["problems"] = [p.as_dict() for p in exc.problems]
        return _json(exc.http_status, answer)

    @app.not_found
    def _not_found(_: Exception) -> Response:
        return _json(404, {"message": f"no route {app.current_event.http_method} {app.current_event.path}"})

    return app


def caller_identity(app: APIGatewayRestResolver | APIGatewayRouter) -> str | None:
    """Who signed the request (API Gateway's AWS_IAM authorizer fills requestContext.identity)."""
    identity = app.current_event.request_context.identity
    return identity.user_arn or identity.caller or identity.user or None


def _describe(err: dict[str, Any]) -> dict[str, Any]:
    kind = str(err.get("type", "value_error"))
    raw_loc = list(err.get("loc", ()))
    # only the leading part says where the field was sent: a field may itself be named "query" (analysis checks)
    loc = [str(p) for p in (raw_loc[1:] if raw_loc[:1] in (["body"], ["query"], ["path"], ["header"]) else raw_loc)]
    if raw_loc[:1] == ["header"]:  # headers arrive lower-cased: name them as people write them
        loc = ["-".join(part.capitalize() for part in str(p).split("-")) for p in loc]
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
    "upgradeId": "upgrade ids are whole numbers from 1 to 2147483647",
    "jobId": "job ids are execution names: letters, digits, '_' and '-', at most 80 characters",
    "before": "upgrade ids are whole numbers from 1 to 2147483647",
    "httpPath": "an absolute path: letters, digits, '.', '_', '~', '-' and '/', no '..' segment, at most 255 characters",
    "service": "a Kubernetes service name: lowercase letters, digits and '-', at most 63 characters",
    "port": "a port name (lowercase letters, digits, '-', starting with a letter) or a number 1..65535",
    "reason": "free text without control characters (tab and newlines are fine), at most 500 characters",
    "chartVersion": "a Helm chart version (SemVer): 1.4.0, 1.5.0-rc.1, v2.0.0+build.7",
    "Idempotency-Key": "letters, digits, '.', '_', ':' and '-', at most 255 characters, starting with a letter or digit",
    "label": "key=value terms separated by commas (at most 10), keys and values as Kubernetes labels",
    "timezone": "an IANA time zone name such as Europe/Berlin",
    "start": "a local time HH:MM (00:00 to 23:59)",
    "expiresAt": "an RFC 3339 time with its offset, e.g. 2026-12-01T00:00:00Z",
    "cursor": "customer ids are ASCII letters, digits, '_' and '-', at most 63 characters",
    "syncId": "sync ids are whole numbers from 1 to 2147483647",
}


_MESSAGES = {
    "missing": "field required",
    "extra_forbidden": "unknown field",
    "string_pattern_mismatch": "value has characters or a length that are not allowed",
}


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)
