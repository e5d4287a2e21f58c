"""/var/runtime/bootstrap.py of the stand-in Lambda base image (upgradectl/samlocal/image.py).

What the real python3.x image does before the handler runs: the function's code, then the layers, then the
runtime's own packages on sys.path (/var/runtime is already there: it holds this script), then the runtime
interface client serves the Runtime API at AWS_LAMBDA_RUNTIME_API with the handler in _HANDLER.
"""

import os
import sys

sys.path[:0] = [
    "/var/task",
    f"/opt/python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages",
    "/opt/python",
]

from awslambdaric.__main__ import main  # noqa: E402 - after the path, as in Lambda

main([sys.argv[0], os.environ["_HANDLER"]])
