"""The committed OpenAPI document is generated from the code; this fails when it is stale."""

from __future__ import annotations

import json
from pathlib import Path

from upgradectl.openapi import build_document

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def test_committed_openapi_document_matches_the_code():
    committed = json.loads(COMMITTED.read_text())
    assert committed == build_document(), "docs/openapi.json is stale: run `make openapi` and commit it"


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
