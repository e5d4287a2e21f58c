"""The customer inventory: list, read, change (audited) customers; a sync's result; the fleet's spread; the
compatibility and promotion rules (audited)."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field
from upgrader import factory
from upgrader.api import customers, promotions
from upgrader.api.http import build_resolver, caller_identity
from upgrader.contract.base import (
    CUSTOMER_ID_PATTERN,
    DIGITS,
    LABEL_SELECTOR_PATTERN,
    LABEL_VALUE_PATTERN,
    UPGRADE_ID_PATTERN,
    VERSION_PATTERN,
)
from upgrader.contract.customer_models import (
    CustomerDetail,
    CustomerList,
    CustomerPatch,
    CustomerPatchResponse,
    FleetResponse,
    SyncSummary,
)
from upgrader.contract.image_models import FleetImagesResponse
from upgrader.contract.models import Component
from upgrader.contract.promotion_models import PromotionRuleHistoryResponse, PromotionRulesResponse, PromotionRuleView
from upgrader.fleet.inventory import CustomerFilter
from upgrader.promotion.models import PromotionRuleRequest
from upgrader.rollout import compatibility

logger = Logger()
router = APIGatewayRouter()
app = build_resolver()

CustomerIdPath = Annotated[
    str, Path(alias="customerId", pattern=CUSTOMER_ID_PATTERN, description="customer id, e.g. cust_abc123")
]
Flag = Literal["true", "false"]


@router.get(
    "/api/customers",
    summary="List customers: filter by component version, labels, status, drift, pins; cursor pagination",
)
def list_customers(
    component: Annotated[
        Component | None,
        Query(description="customers whose release runs this component (at `version`, when given)"),
    ] = None,
    version: Annotated[
        str | None,
        Query(
            pattern=VERSION_PATTERN,
            max_length=128,
            description="customers running this version (of `component`, when given)",
        ),
    ] = None,
    label: Annotated[
        str | None, Query(pattern=LABEL_SELECTOR_PATTERN, description="key=value[,key=value...]: carrying all of them")
    ] = None,
    status: Annotated[Literal["active", "suspended", "decommissioned"] | None, Query()] = None,
    drift: Annotated[Flag | None, Query(description="true: only customers marked with drift")] = None,
    pinned: Annotated[Flag | None, Query(description="true: only customers with a pin in force")] = None,
    cursor: Annotated[
        str | None, Query(pattern=CUSTOMER_ID_PATTERN, description="nextCursor of the page before")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=500), DIGITS, Query()] = 100,
    ring: Annotated[
        str | None,
        Query(
            pattern=LABEL_VALUE_PATTERN,
            description="customers in this ring (GET /api/fleet lists them; a customer without one is in the last)",
        ),
    ] = None,
) -> CustomerList:
    where = CustomerFilter(
        status=status,
        drift=None if drift is None else drift == "true",
        pinned=None if pinned is None else pinned == "true",
        labels=dict(term.split("=", 1) for term in label.split(",")) if label else None,
        component=component,
        version=version,
        ring=ring,
    )
    return customers.list_customers(
        where, cursor=cursor, limit=limit, inventory=factory.inventory(), order=factory.ring_order()
    )


@router.get(
    "/api/customers/<customerId>",
    summary="One customer: versions, labels, window, pins, drift, every operation on it and its history",
    responses={200: {"description": "the customer"}, 404: {"description": "unknown customer"}},
)
def get_customer(
    customer_id: CustomerIdPath,
    limit: Annotated[int, Field(ge=1, le=500), DIGITS, Query(description="operations and history entries")] = 100,
) -> CustomerDetail:
    return customers.get_customer(customer_id, limit=limit, inventory=factory.inventory(), order=factory.ring_order())


@router.patch(
    "/api/customers/<customerId>",
    summary="Change a customer: labels, maintenance window, pins, status (active/suspended), ring, drift acknowledged",
    responses={
        200: {"description": "changed (or nothing to change); what changed, who and when"},
        404: {"description": "unknown customer"},
        409: {
            "description": "a decommissioned customer's status cannot be changed, or its ring comes from its namespace's ring label"
        },
    },
)
def patch_customer(
    customer_id: CustomerIdPath,
    patch: Annotated[CustomerPatch, Body()],
) -> CustomerPatchResponse:
    who = caller_identity(router)
    result = customers.patch_customer(
        customer_id, patch, changed_by=who, inventory=factory.inventory(), order=factory.ring_order()
    )
    logger.info("customer changed", extra={"customer_id": customer_id, "by": who, "changes": sorted(result.changes)})
    return result


@router.get(
    "/api/customers/sync/<syncId>",
    summary="One inventory sync: its status, counts and the problems it met",
    responses={200: {"description": "the sync"}, 404: {"description": "unknown sync"}},
)
def get_sync(
    sync_id: Annotated[str, Path(alias="syncId", pattern=UPGRADE_ID_PATTERN, description="sync id")],
) -> SyncSummary:
    return customers.get_sync(int(sync_id), syncs=factory.syncs())


@router.get("/api/fleet", summary="The fleet: per component, how many customers run each version; drift, pins, status")
def get_fleet() -> FleetResponse:
    return customers.fleet(inventory=factory.inventory(), syncs=factory.syncs(), order=factory.ring_order())


@router.get(
    "/api/fleet/images",
    summary="Every image digest a customer runs or needs for a rollback: what a registry cleanup must keep",
)
def get_fleet_images() -> FleetImagesResponse:
    return customers.fleet_images(report=factory.image_report())


@router.get("/api/compatibility-rules", summary="The version compatibility rules deploys, plans and rollbacks obey")
def rules_in_force() -> compatibility.RuleList:
    return compatibility.rules_in_force(rules=factory.rules())


@router.post(
    "/api/compatibility-rules",
    status_code=201,
    summary="Add a version compatibility rule (requires another component's versions, or upgrades only from)",
    responses={201: {"description": "the rule, in force for every deploy, plan and rollback from now on"},
               422: {"description": "invalid rule (a version specifier that does not parse names its field)"}},
)  # fmt: skip
def record_rule(rule: Annotated[compatibility.RuleRequest, Body()]) -> compatibility.RuleView:
    who = caller_identity(router)
    result = compatibility.record_rule(rule, created_by=who, rules=factory.rules())
    logger.info("compatibility rule added", extra={"rule_id": result.rule_id, "by": who})
    return result


@router.delete(
    "/api/compatibility-rules/<ruleId>",
    summary="Delete a version compatibility rule",
    responses={200: {"description": "deleted"}, 404: {"description": "unknown rule"}},
)
def remove_rule(
    rule_id: Annotated[str, Path(alias="ruleId", pattern=UPGRADE_ID_PATTERN, description="rule id")],
) -> compatibility.RuleDeleted:
    who = caller_identity(router)
    result = compatibility.remove_rule(int(rule_id), rules=factory.rules())
    logger.info("compatibility rule deleted", extra={"rule_id": rule_id, "by": who})
    return result


ComponentPath = Annotated[Component, Path(description="the component the rule is for")]


@router.get("/api/promotion-rules", summary="Every component's promotion rule, and the rings in order")
def promotion_rules() -> PromotionRulesResponse:
    return promotions.rules(repo=factory.promotion_rules(), ring_order=factory.ring_order().names)


@router.put(
    "/api/promotion-rules/<component>",
    summary="Set a component's promotion rule: a version starts on a ring only after it passed the ring before",
    responses={200: {"description": "the rule, in force for every deploy and plan of the component from now on"},
               422: {"description": "invalid rule (minSuccessPercent outside 0-100, a negative minBakeSeconds)"}},
)  # fmt: skip
def set_promotion_rule(component: ComponentPath, rule: Annotated[PromotionRuleRequest, Body()]) -> PromotionRuleView:
    who = caller_identity(router)
    result = promotions.set_rule(component, rule, actor=who, repo=factory.promotion_rules())
    logger.info("promotion rule set", extra={"component": component, "by": who})
    return result


@router.delete(
    "/api/promotion-rules/<component>",
    summary="Delete a component's promotion rule: its deploys are no longer checked",
    responses={200: {"description": "deleted: the default rule, not enforced"},
               404: {"description": "the component has no promotion rule"}},
)  # fmt: skip
def delete_promotion_rule(component: ComponentPath) -> PromotionRuleView:
    who = caller_identity(router)
    result = promotions.remove_rule(component, actor=who, repo=factory.promotion_rules())
    logger.info("promotion rule deleted", extra={"component": component, "by": who})
    return result


@router.get("/api/promotion-rules/<component>/history", summary="Every change of a component's promotion rule")
def promotion_rule_history(component: ComponentPath) -> PromotionRuleHistoryResponse:
    return promotions.history(component, repo=factory.promotion_rules())


app.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
