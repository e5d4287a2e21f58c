"""POST continue / rollback of one customer: the operator's hands on a running upgrade."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from upgrader import factory
from upgrader.api import service
from upgrader.api.http import build_resolver, caller_identity
from upgrader.contract.base import CUSTOMER_ID_PATTERN, UPGRADE_ID_PATTERN
from upgrader.contract.models import (
    AbortRequest,
    AbortResponse,
    ContinueResponse,
    ResumeRequest,
    ResumeResponse,
    RollbackCustomerRequest,
    RollbackResponse,
    RollbackUpgradeRequest,
    RollbackUpgradeResponse,
)
from upgrader.infra.settings import get_settings

logger = Logger()
router = APIGatewayRouter()
app = build_resolver()

UpgradeIdPath = Annotated[str, Path(alias="upgradeId", pattern=UPGRADE_ID_PATTERN, description="upgrade id, e.g. 123")]
# A POST without a body takes the defaults (the spec's curl examples send none).
_NO_ABORT_OPTIONS = AbortRequest()
_NO_ROLLBACK_OPTIONS = RollbackUpgradeRequest()
_NO_CUSTOMER_ROLLBACK_OPTIONS = RollbackCustomerRequest()


@router.post(
    "/api/upgrades/<upgradeId>/continue",
    summary="Release the canary gate: upgrade the remaining customers",
    responses={200: {"description": "continuation queued"}, 404: {"description": "unknown upgrade"},
               409: {"description": "not awaiting continue (or already continued)"}},
)  # fmt: skip
def continue_upgrade(upgrade_id: UpgradeIdPath) -> ContinueResponse:
    who = caller_identity(router)
    result = service.continue_upgrade(
        int(upgrade_id), continued_by=who, repo=factory.repository(), workflow=factory.workflow()
    )
    logger.info("canary gate released", extra={"upgrade_id": upgrade_id, "by": who})
    return result


@router.post(
    "/api/upgrades/<upgradeId>/rollback/<customerId>",
    status_code=202,
    summary="Roll one customer back to its version before this upgrade (helm rollback, as a Job)",
    responses={202: {"description": "rollback started"}, 404: {"description": "unknown upgrade or customer"},
               409: {"description": "the customer's upgrade is still running, failed, or already rolled back"},
               422: {"description": "invalid request, or the version restored would break a compatibility rule "
                                    "(IncompatibleVersions, listed in incompatible; force overrides)"}},
)  # fmt: skip
def rollback_customer(
    upgrade_id: UpgradeIdPath,
    customer_id: Annotated[
        str, Path(alias="customerId", pattern=CUSTOMER_ID_PATTERN, description="customer id, e.g. cust_abc123")
    ],
    request: Annotated[
        RollbackCustomerRequest, Body(description="optional; no body means no force")
    ] = _NO_CUSTOMER_ROLLBACK_OPTIONS,
) -> RollbackResponse:
    who = caller_identity(router)
    result = service.request_rollback(
        int(upgrade_id),
        customer_id,
        requested_by=who,
        repo=factory.repository(),
        rollbacks=factory.rollbacks(),
        rules=factory.rules(),
        workflow=factory.workflow(),
        force=request.force,
    )
    logger.info("rollback started", extra={"upgrade_id": upgrade_id, "customer_id": customer_id, "by": who})
    return result


@router.post(
    "/api/upgrades/<upgradeId>/abort",
    status_code=202,
    summary="Stop an upgrade: no further customer starts; running ones finish; optionally roll back",
    responses={202: {"description": "abort requested"}, 404: {"description": "unknown upgrade"},
               409: {"description": "the upgrade has already finished or is already aborting"}},
)  # fmt: skip
def abort_upgrade(
    upgrade_id: UpgradeIdPath,
    request: Annotated[
        AbortRequest, Body(description="optional; no body means no rollback, no reason")
    ] = _NO_ABORT_OPTIONS,
) -> AbortResponse:
    who = caller_identity(router)
    result = service.abort_upgrade(
        int(upgrade_id),
        aborted_by=who,
        reason=request.reason,
        rollback=request.rollback,
        repo=factory.repository(),
        workflow=factory.workflow(),
        recon=factory.reconcile(),
        run_steps=factory.runs(),
    )
    logger.info("upgrade abort requested", extra={"upgrade_id": upgrade_id, "by": who, "rollback": request.rollback})
    return result


@router.post(
    "/api/upgrades/<upgradeId>/rollback",
    status_code=202,
    summary="Roll every customer of a finished upgrade back to its own previous version, last wave first",
    responses={202: {"description": "rollback started"}, 404: {"description": "unknown upgrade"},
               409: {"description": "the upgrade is still active, or nothing is left to roll back"},
               422: {"description": "invalid request, or a version restored would break a compatibility rule "
                                    "(IncompatibleVersions, listed in incompatible; force overrides)"}},
)  # fmt: skip
def rollback_upgrade(
    upgrade_id: UpgradeIdPath,
    request: Annotated[
        RollbackUpgradeRequest, Body(description="optional; no body means the upgrade's own concurrency")
    ] = _NO_ROLLBACK_OPTIONS,
) -> RollbackUpgradeResponse:
    who = caller_identity(router)
    result = service.rollback_upgrade(
        int(upgrade_id),
        requested_by=who,
        max_concurrency=request.max_concurrency,
        repo=factory.repository(),
        rollbacks=factory.rollbacks(),
        rules=factory.rules(),
        workflow=factory.workflow(),
        max_concurrency_cap=get_settings().max_concurrency_cap,
        force=request.force,
    )
    logger.info("upgrade rollback started", extra={"upgrade_id": upgrade_id, "by": who, "job_id": result.job_id})
    return result


@router.post(
    "/api/upgrades/<upgradeId>/resume",
    status_code=202,
    summary="Go on with a halted, aborted or failed upgrade: the customers not yet done, in a new execution",
    responses={202: {"description": "resumed"}, 404: {"description": "unknown upgrade"},
               409: {"description": "not halted/aborted/failed, a run of it still runs, nothing left, or another "
                                    "upgrade of the component is active"},
               422: {"description": "invalid body, or the resumed plan exceeds an execution's limits"}},
)  # fmt: skip
def resume_upgrade(
    upgrade_id: UpgradeIdPath,
    request: Annotated[ResumeRequest | None, Body()] = None,
) -> ResumeResponse:
    who = caller_identity(router)  # type: ignore[arg-type]
    result = service.resume_upgrade(
        int(upgrade_id),
        request or ResumeRequest(),
        requested_by=who,
        repo=factory.repository(),
        resumes=factory.resumes(),
        workflow=factory.workflow(),
        settings=get_settings(),
    )
    logger.info("upgrade resumed", extra={"upgrade_id": upgrade_id, "by": who, "job_id": result.job_id})
    return result


app.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
