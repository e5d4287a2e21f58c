"""The inventory sync: discover customers from the cluster and bring the inventory in line.

Three triggers, one handler:
- `{"syncId": N}`: a sync requested through POST /api/customers/sync (an asynchronous invocation);
- EventBridge Scheduler (`{"source": "scheduler.sync"}`): the periodic sync;
- the local stack at start-up (`{"source": "local.startup"}`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.fleet import discovery
from upgrader.infra.settings import get_settings

logger = Logger()
TRIGGERS = {"scheduler.sync": "schedule", "local.startup": "startup"}


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    syncs = factory.syncs()
    rules = factory.discovery_rules()
    rings = factory.ring_labels()  # a bad CUSTOMER_RING_LABEL or RING_ORDER fails here, before any sync is claimed
    if event.get("syncId") is not None:
        row = syncs.claim(int(event["syncId"]))
        if row is None:  # delivered again, or failed as stale meanwhile: nothing to do
            logger.info("sync not pending; nothing to do", extra={"sync_id": event["syncId"]})
            return {"syncId": str(event["syncId"]), "status": "not pending"}
    else:
        trigger = TRIGGERS.get(str(event.get("source")), "schedule")
        row, created = syncs.request(trigger, event.get("requestedBy") or trigger, running=True)
        if not created:
            logger.info("a sync is already running", extra={"sync_id": row.id})
            return {"syncId": row.sync_id, "status": row.status, "alreadyRunning": True}
    logger.append_keys(sync_id=row.id)
    try:
        finished = discovery.execute_sync(
            row.id,
            reader=factory.fleet_reader,
            store=syncs,
            rules=rules,
            rings=rings,
            concurrency=get_settings().discovery_concurrency,
        )
    except discovery.SyncFailed as exc:
        # Recorded on the sync's row; trying again at once would fail the same way: the next one will tell.
        logger.warning("sync failed", extra={"error": str(exc)})
        return (syncs.get(row.id) or row).model_dump()
    summary = finished.model_dump()
    logger.info("sync completed", extra={"counts": summary["counts"]})
    return summary
