"""API functions import the cluster types; they must not pay for the kubernetes client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_types_do_not_import_kubernetes() -> None:
    code = (
        "import sys; import upgrader.cluster, upgrader.cluster.types; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'kubernetes'], 'kubernetes imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT / "layers" / "shared")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
