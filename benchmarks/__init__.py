"""Benchmarks of the real product (`make bench`). Importing any of them first runs this set-up, once:
the project's packages on the path (run from a checkout without the editable install too), moto's
logging quiet (it logs every caught JSONPath miss at ERROR level) and the environment the handlers
expect when it is not set already."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _entry in (ROOT / "layers" / "shared", ROOT):
    if str(_entry) not in sys.path:
        sys.path.insert(0, str(_entry))

logging.getLogger("moto").setLevel(logging.CRITICAL)
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "customer-upgrades")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
