"""The committed OpenAPI document is generated from the code; this fails when it is stale."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from upgrader.contract.base import INT4_MAX, LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN
from upgrader.infra.vocabulary import UPGRADE_STATUSES

from upgradectl.openapi import build_document

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


# The README's command (tests/docs/test_readme_commands.py), run as written with its output sent elsewhere
MAKE_OPENAPI = "make openapi"


def test_committed_openapi_document_matches_the_code(tmp_path: Path):
    """`make openapi` writes exactly the committed document. Breakage tried: one character of docs/openapi.json's
    text changed (the document still parses the same): this test failed."""
    written = tmp_path / "openapi.json"
    made = subprocess.run([*shlex.split(MAKE_OPENAPI), f"OPENAPI_OUT={written}"], cwd=COMMITTED.parents[1],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert json.loads(written.read_text()) == build_document()
    assert COMMITTED.read_text() == written.read_text(), "docs/openapi.json is stale: run `make openapi` and commit it"


def test_document_covers_every_route_of_the_spec_with_its_fields():
    doc = build_document()
    paths = doc["paths"]
    for path, method in [
        ("/api/upgrades/deploy", "post"),
        ("/api/upgrades/{upgradeId}/status", "get"),
        ("/api/upgrades/{upgradeId}/logs", "get"),
        ("/api/upgrades/{upgradeId}/continue", "post"),
        ("/api/upgrades/{upgradeId}/rollback/{customerId}", "post"),
        ("/api/upgrades", "get"),
        ("/api/queue/stats", "get"),
        ("/api/queue/jobs/{jobId}", "get"),
    ]:
        assert method in paths[path], (path, method)
    schemas = doc["components"]["schemas"]
    assert {"component", "version", "strategy", "canaryPercent", "batchSize"} <= set(
        schemas["DeployRequest"]["properties"]
    )
    assert {"upgradeId", "completed", "failed", "inProgress", "startedAt", "completedAt"} <= set(
        schemas["StatusResponse"]["properties"]
    )
    assert doc["security"] == [{"sigv4": []}]


# -- what holds for every operation, today's and tomorrow's -------------------------------------------------
DOC = build_document()
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
OPERATIONS = [
    (f"{method.upper()} {path}", operation)
    for path, item in DOC["paths"].items()
    for method, operation in item.items()
    if method in METHODS
]
OPERATION_IDS = [name for name, _ in OPERATIONS]
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_sigv4_is_a_security_scheme_of_every_operation_not_a_parameter():
    assert DOC["components"]["securitySchemes"] == {
        "sigv4": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": DOC["components"]["securitySchemes"]["sigv4"]["description"],
            "x-amazon-apigateway-authtype": "awsSigv4",
        }
    }
    for name, operation in OPERATIONS:
        assert operation["security"] == [{"sigv4": []}], name
        # Headers the signature is made of are never parameters (Idempotency-Key is one of the API's own).
        signing = {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
        assert not [p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"].lower() in signing]


def test_servers_define_every_variable_they_use():
    for server in DOC["servers"]:
        used = set(re.findall(r"\{(\w+)\}", server["url"]))
        assert used == set(server.get("variables", {})), server
        assert all("default" in variable for variable in server.get("variables", {}).values()), server


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OPERATION_IDS)
def test_every_error_status_has_the_error_schema_and_every_status_is_listed(name, operation):
    responses = operation["responses"]
    statuses = {int(code) for code in responses}
    # what API Gateway and the runtime can answer on any route
    assert {403, 422, 429, 500, 502, 503, 504} <= statuses, name
    # a body that is not one JSON object, or not JSON: every route refuses one, with or without a body
    assert {400, 415} <= statuses, name
    if any(p["in"] == "path" for p in operation.get("parameters", [])):
        assert 404 in statuses, name
    if "requestBody" in operation:
        assert 413 in statuses, name
    assert len([s for s in statuses if s < 300]) == 1, name
    for code, response in responses.items():
        schema = response["content"]["application/json"]["schema"]
        if code == "403":  # API Gateway's own body: `message`, or `Message` for an IAM denial
            assert schema == {"$ref": "#/components/schemas/GatewayError"}, (name, code)
            gateway = DOC["components"]["schemas"]["GatewayError"]
            assert set(gateway["properties"]) == {"message", "Message"} and "required" not in gateway
        elif int(code) >= 400:
            assert schema == ERROR_REF, (name, code)
        else:
            assert schema != ERROR_REF, (name, code)
    error = DOC["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["message"] and {
        "message", "error", "errors", "incompatible", "promotion", "problems",
    } == set(error["properties"])  # fmt: skip
    assert not {"HTTPValidationError", "ValidationError"} & set(DOC["components"]["schemas"])


def _unbounded(schema: dict[str, Any], where: str) -> list[str]:
    """Places in an input schema that the database or the code could not take whatever their value."""
    schema = resolve(schema)
    found: list[str] = []
    unions = ("anyOf", "oneOf") if "discriminator" in schema else ("anyOf",)  # a oneOf with a tag: its branches
    for union in unions:
        for index, option in enumerate(schema.get(union, [])):
            found += _unbounded(option, f"{where}|{index}")
    if any(union in schema for union in unions):
        return found
    kind = schema.get("type")
    if kind == "integer":
        if not (schema.get("minimum", -1) >= 0 and schema.get("maximum", INT4_MAX + 1) <= INT4_MAX):
            found.append(f"{where}: integer without bounds inside 0..{INT4_MAX}")
    elif kind == "number":
        if "minimum" not in schema or "maximum" not in schema:
            found.append(f"{where}: number without bounds")
    elif kind == "string":
        pattern = schema.get("pattern", "")
        anchored = pattern.startswith("^") and pattern.endswith("$") and not re.search(r"[*+]|,\}", pattern)
        if not ("enum" in schema or "const" in schema or "maxLength" in schema or anchored):
            found.append(f"{where}: string without a length bound")
    elif kind == "array":
        if "maxItems" not in schema:
            found.append(f"{where}: array without maxItems")
        found += _unbounded(schema["items"], f"{where}[]")
    elif kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict):  # a map: bounded keys (propertyNames), bounded values, a bounded size
            if "maxProperties" not in schema:
                found.append(f"{where}: map without maxProperties")
            found += _unbounded({"type": "string", **schema.get("propertyNames", {})}, f"{where}.<key>")
            found += _unbounded(values, f"{where}.<value>")
        elif values is not False:
            found.append(f"{where}: object that takes any property")
        for key, value in schema.get("properties", {}).items():
            found += _unbounded(value, f"{where}.{key}")
    elif kind not in ("boolean", "null"):
        found.append(f"{where}: schema without a type {schema}")
    return found


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OPERATION_IDS)
def test_every_input_is_bounded_as_the_database_allows(name, operation):
    problems: list[str] = []
    for parameter in operation.get("parameters", []):
        assert parameter["schema"].get("type") != "null" and "anyOf" not in parameter["schema"], (name, parameter)
        problems += _unbounded(parameter["schema"], f"{parameter['in']} {parameter['name']}")
    if "requestBody" in operation:
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert resolve(body).get("type") == "object" and "anyOf" not in body, (name, body)
        problems += _unbounded(body, "body")
    assert problems == [], name


def test_the_bound_check_notices_an_unbounded_input():
    assert _unbounded({"type": "integer", "minimum": 1}, "x") == [f"x: integer without bounds inside 0..{INT4_MAX}"]
    assert _unbounded({"type": "string", "pattern": "^[0-9]+$"}, "x") == ["x: string without a length bound"]
    assert _unbounded({"type": "object", "properties": {}}, "x") == ["x: object that takes any property"]
    assert _unbounded({"type": "array", "items": {"type": "boolean"}}, "x") == ["x: array without maxItems"]
    assert _unbounded({"type": "object", "additionalProperties": {"type": "boolean"}, "maxProperties": 2}, "x") == [
        "x.<key>: string without a length bound"
    ]


# -- what client generators read ----------------------------------------------------------------------------
def _schemas_in(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(s for value in node.values() for s in _schemas_in(value))]
    if isinstance(node, list):
        return [s for value in node for s in _schemas_in(value)]
    return []


def test_label_maps_are_described_as_client_generators_read_them():
    """openapi-python-client ignores `patternProperties`: beside `additionalProperties: false` it generated a
    model without fields that sent `"labels": {}`. Maps carry their value schema in `additionalProperties`
    and their key pattern in `propertyNames`.

    Breakage tried: the label fields without `label_map_schema` (pydantic's patternProperties + false, as
    before) fail here."""
    assert not [s for s in _schemas_in(DOC) if "patternProperties" in s]
    schemas = DOC["components"]["schemas"]
    deploy = resolve(schemas["DeployRequest"]["properties"]["labels"]["anyOf"][0])
    patch = schemas["CustomerPatch"]["properties"]["labels"]
    for labels in (deploy, patch):
        assert labels["type"] == "object" and labels["minProperties"] == 1 and labels["maxProperties"] == 20
        assert labels["propertyNames"] == {"pattern": LABEL_KEY_PATTERN}
    assert deploy["additionalProperties"] == {"type": "string", "pattern": LABEL_VALUE_PATTERN}
    assert patch["additionalProperties"] == {
        "anyOf": [{"type": "string", "pattern": LABEL_VALUE_PATTERN}, {"type": "null"}]
    }


def test_the_upgrade_list_filters_by_every_status_an_upgrade_can_have():
    """Breakage tried: the route's own Literal without rolled_back/rollback_incomplete (as before) fails here."""
    parameters = DOC["paths"]["/api/upgrades"]["get"]["parameters"]
    status = next(p for p in parameters if p["name"] == "status")
    assert status["schema"]["enum"] == list(UPGRADE_STATUSES)
    assert {"rolled_back", "rollback_incomplete"} <= set(status["schema"]["enum"])
