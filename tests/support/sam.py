"""aws-sam-cli for the tests: find it, and run SAM's own transform (samtranslator) on a template.

The transform is the exact code `sam deploy` runs to turn template.yaml into CloudFormation (Globals
merged, policy templates expanded, Connectors and function roles generated). It lives in the SAM
virtualenv (.venv-sam, made by `make setup`): its pins conflict with the project's, so it runs there,
in one subprocess per batch of templates.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.support.template import ROOT
from tests.support.tools import require_tool

# Runs inside the SAM virtualenv: reads a JSON list of templates, writes the transformed list.
_TRANSFORM = r"""
import json, sys
from samtranslator.translator.transform import transform

class NoManagedPolicies:  # policies are referenced by ARN here; nothing to look up
    def load(self):
        return {}

LOCAL_URIS = {"CodeUri", "ContentUri", "DefinitionUri"}

def s3_uris(node):
    # `sam package` replaces local paths by S3 URIs before the transform; do the same.
    if isinstance(node, dict):
        return {k: (f"s3://artifacts/{v.strip('/')}.zip" if k in LOCAL_URIS and isinstance(v, str)
                    and not v.startswith("s3://") else s3_uris(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [s3_uris(v) for v in node]
    return node

print(json.dumps([transform(s3_uris(t), {}, NoManagedPolicies()) for t in json.load(sys.stdin)]))
"""


def require_sam() -> str:
    """The sam executable; skips the test where it is missing, fails in CI (where it must be)."""
    return require_tool("sam", os.environ.get("SAM_EXECUTABLE"), str(ROOT / ".venv-sam" / "bin" / "sam"))


def sam_environment() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "SAM_CLI_TELEMETRY": "0",
    }


def _sam_python(sam: str) -> str:
    """The interpreter of a pip-installed `sam` script (its shebang), which can import samtranslator."""
    with open(sam, "rb") as handle:
        first = handle.readline().decode(errors="replace").strip()
    if not first.startswith("#!") or "python" not in first:
        pytest.fail(f"{sam} is not a pip-installed aws-sam-cli; cannot run SAM's transform with it")
    return first[2:].strip().split()[0]


def run_with_sam(argv: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a SAM tool (the sam CLI, or the SAM virtualenv's python) from the repository, no telemetry."""
    return subprocess.run(
        argv, cwd=ROOT, input=stdin, env=sam_environment(), capture_output=True, text=True, timeout=300, check=False
    )


def sam_transform(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CloudFormation that SAM makes of each template (long-form intrinsics, as tests.support.template loads)."""
    result = run_with_sam([_sam_python(require_sam()), "-c", _TRANSFORM], stdin=json.dumps(templates))
    assert result.returncode == 0, f"SAM transform failed:\n{result.stderr[-4000:]}"
    return list(json.loads(result.stdout))
