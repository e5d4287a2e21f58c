"""Answer a CloudFormation custom resource request (PUT to the pre-signed ResponseURL)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def send(event: dict[str, Any], context: Any, status: str, data: dict[str, Any], reason: str | None = None) -> None:
    url = event["ResponseURL"]
    if not url.startswith("https://"):
        raise ValueError("ResponseURL must be https")
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or f"see CloudWatch log stream {context.log_stream_name}",
            "PhysicalResourceId": event.get("PhysicalResourceId") or "database-migrations",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - https checked above
        response.read()
