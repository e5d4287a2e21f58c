from __future__ import annotations

import json
from typing import Any

from tests.conftest import body
from tests.support.events import api_event
from tests.support.functions import invoke


def deploy(**payload: Any) -> dict[str, Any]:
    """POST /api/upgrades/deploy: api v1.2.0 to everyone unless the payload says otherwise (`components`: a train)."""
    single = {} if "components" in payload else {"component": "api", "version": "v1.2.0"}
    request = {**single, "strategy": "all", **payload}
    response = invoke("api_deploy", api_event("api_deploy", body=request))
    assert response["statusCode"] == 202, response["body"]
    return body(response)


def call(
    function: str,
    event_name: str,
    path: str,
    params: dict[str, str],
    query: dict[str, str] | None = None,
    instance: int = 0,
):
    response = invoke(function, api_event(event_name, path=path, path_params=params, query=query), instance)
    return response["statusCode"], body(response)


def status(upgrade_id: str):
    return call("api_upgrades", "api_upgrades_status", f"/api/upgrades/{upgrade_id}/status", {"upgradeId": upgrade_id})


def logs(upgrade_id: str, **query: str):
    return call(
        "api_upgrades", "api_upgrades_logs", f"/api/upgrades/{upgrade_id}/logs", {"upgradeId": upgrade_id}, query
    )


def continue_(upgrade_id: str, instance: int = 0):
    path = f"/api/upgrades/{upgrade_id}/continue"
    return call("api_control", "api_control_continue", path, {"upgradeId": upgrade_id}, instance=instance)


def rollback(upgrade_id: str, customer_id: str):
    return call(
        "api_control",
        "api_control_rollback",
        f"/api/upgrades/{upgrade_id}/rollback/{customer_id}",
        {"upgradeId": upgrade_id, "customerId": customer_id},
    )


def control(action: str, upgrade_id: str, payload: Any = None, instance: int = 0):
    """POST /api/upgrades/{id}/abort or /rollback (whole upgrade), with an optional JSON body."""
    name = {"abort": "api_control_abort", "rollback": "api_control_rollback_upgrade"}[action]
    event = api_event(name, path=f"/api/upgrades/{upgrade_id}/{action}", path_params={"upgradeId": upgrade_id})
    event["body"] = json.dumps(payload) if payload is not None else None
    response = invoke("api_control", event, instance)
    return response["statusCode"], body(response)
