"""benchmarks/cold_starts.py: which code and layers each function's container gets (no timed assertion: the
figures are printed, never judged)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.cold_starts import Case, table

BUILT_TEMPLATE = """\
Resources:
  ApiDeployFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ApiDeployFunction
      Layers:
        - Ref: SharedLayer
  StartHelmJobFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: StartHelmJobFunction
      Layers: [!Ref SharedLayer, !Ref KubernetesLayer]
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
"""


def test_each_function_gets_its_built_code_and_exactly_its_layers(tmp_path: Path):
    """Breakage tried: every function given both layers (the API functions' sys.path held the kubernetes client)."""
    (tmp_path / "template.yaml").write_text(BUILT_TEMPLATE)
    case = Case("after", tmp_path, "3.12")
    assert case.image == "public.ecr.aws/lambda/python:3.12-x86_64"
    assert case.functions() == {
        "api_deploy": (tmp_path / "ApiDeployFunction", ["SharedLayer"]),
        "start_helm_job": (tmp_path / "StartHelmJobFunction", ["SharedLayer", "KubernetesLayer"]),
    }
    found = {"after": {"api_deploy": [{"ms": 400.0, "cpu_ms": 300.0}, {"ms": 420.0, "cpu_ms": 310.0}]}}
    printed = table([case], found, {})
    assert printed.splitlines()[2].split() == ["api_deploy", "410", "305", "-"]
