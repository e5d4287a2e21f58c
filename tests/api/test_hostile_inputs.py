"""Hostile and malformed input: refused by validation alone, naming the field, with nothing written.

Each route gets a target: an existing upgrade in the state the route accepts (pending for abort,
awaiting_continue for continue, a completed customer for its rollback, a finished upgrade for the
whole-upgrade rollback, ...). The valid request on that target succeeds, so when a case changes one
input and gets the exact 422 (400 for a body that is not one JSON object, 415 for a media type)
naming that input, only validation refused it. Every route, one that takes no body included, gets a
body of every wrong JSON type, and nothing may change (database, Step Functions, sync launches).
The mutation tests then remove that validation and show every case getting through.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api import helpers
from tests.api.hostile import (
    OPERATIONS,
    Case,
    Raw,
    Target,
    cases_from_document,
    operation_doc,
    refusal_problem,
    request,
    resolve,
    unique_cases,
    unique_items_properties,
    validation_removed,
)
from tests.support.database import snapshot, truncate_all
from tests.support.fakes import FakeSyncLauncher, FakeWorkflow


@dataclass
class World:
    make_customers: Any
    sql: Any
    workflow: FakeWorkflow
    launcher: FakeSyncLauncher
    database_url: str

    def recorded(self) -> tuple[int, int, int, int]:
        return (
            len(self.workflow.started), len(self.workflow.continued), len(self.workflow.failed_tokens),
            len(self.launcher.launched),
        )  # fmt: skip

    def reset(self) -> None:
        """An empty database and no recorded calls: the next target is set up from scratch."""
        truncate_all(self.database_url)
        self.workflow.reset()
        self.launcher.launched.clear()


# ------------------------------------------------------------------------------------------- targets
DEPLOY = {"component": "api", "version": "v1.2.0", "strategy": "canary", "canaryPercent": 10}
# Valid deploys carrying the list fields the canary deploy cannot (their duplicate-item cases start here).
DEPLOY_EXAMPLES: dict[str, Any] = {
    "steps": {"component": "api", "version": "v1.2.0", "strategy": "progressive", "steps": [10, 50, 100]},
    "customerIds": {**DEPLOY, "customerIds": ["cust_0001", "cust_0002"]},
    "rings": {**DEPLOY, "rings": ["production", "staging"]},
}


def _fleet(world: World) -> dict[str, str]:
    world.make_customers(5)
    return {}


def _pending(world: World) -> dict[str, str]:
    world.make_customers(5)
    return {"upgradeId": helpers.deploy(strategy="canary")["upgradeId"]}


def _listed(world: World) -> dict[str, str]:
    _pending(world)
    return {}


def _awaiting_continue(world: World) -> dict[str, str]:
    params = _pending(world)
    world.sql("UPDATE system_upgrades SET status = 'awaiting_continue', task_token = 'gate-token'")
    return params


def _completed_customer(world: World) -> dict[str, str]:
    params = _pending(world)
    world.sql("UPDATE customer_upgrade_logs SET status = 'completed' WHERE customer_id = 'cust_0002'")
    return {**params, "customerId": "cust_0002"}


def _finished(world: World) -> dict[str, str]:
    params = _pending(world)
    world.sql("UPDATE system_upgrades SET status = 'completed'")
    world.sql("UPDATE customer_upgrade_logs SET status = 'completed'")
    return params


def _halted(world: World) -> dict[str, str]:
    params = _pending(world)
    world.sql("UPDATE system_upgrades SET status = 'halted', halt_reason = 'wave 1 of 2: 1 of 1 customers failed'")
    world.sql("UPDATE upgrade_runs SET status = 'halted'")
    world.sql("UPDATE customer_upgrade_logs SET status = 'skipped'")
    return params


def _helm_output(world: World) -> dict[str, str]:
    params = _completed_customer(world)
    (row,) = world.sql("SELECT id FROM customer_upgrade_logs WHERE customer_id = 'cust_0002'")
    world.sql("INSERT INTO helm_outputs (log_id, job_name, stage, phase, output)"
              f" VALUES ({int(row['id'])}, 'upgrade-1-cust-0002-1', 'upgrade', 'succeeded', 'Release upgraded')")  # fmt: skip
    return {**params, "logId": str(row["id"])}


def _job(world: World) -> dict[str, str]:
    world.make_customers(5)
    return {"jobId": helpers.deploy()["jobId"]}


def _customer(world: World) -> dict[str, str]:
    world.make_customers(3, labels={"tier": "gold"})
    return {"customerId": "cust_0002"}


def _labelled_fleet(world: World) -> dict[str, str]:
    world.make_customers(3, labels={"tier": "gold"})
    return {}


def _rule(world: World) -> dict[str, str]:
    world.sql("INSERT INTO compatibility_rules (component, versions, kind, requires_component, requires_versions)"
              " VALUES ('dashboard', '>=2.0', 'requires', 'api', '>=1.2')")  # fmt: skip
    return {"ruleId": str(world.sql("SELECT max(id) AS id FROM compatibility_rules")[0]["id"])}


def _rules(world: World) -> dict[str, str]:
    _rule(world)
    return {}


RULE: dict[str, Any] = {
    "component": "dashboard",
    "versions": ">=2.0",
    "requires": {"component": "api", "versions": ">=1.2"},
    "reason": "dashboard 2 calls the api 1.2 auth endpoints",
}


def _sync(world: World) -> dict[str, str]:
    world.sql("INSERT INTO inventory_syncs (status, trigger, counts) VALUES ('completed', 'api', '{\"added\": 3}')")
    return {"syncId": "1"}


IN_A_MONTH = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
WINDOW: dict[str, Any] = {"timezone": "Europe/Berlin", "days": ["sat", "sun"], "start": "02:00", "durationMinutes": 120}
PATCH: dict[str, Any] = {
    "labels": {"tier": "platinum", "region": None},
    "maintenanceWindow": {
        "timezone": "Europe/Berlin",
        "days": ["sat", "sun"],
        "start": "02:00",
        "durationMinutes": 120,
    },
    "pins": {"api": {"version": "v1.1.0", "reason": "customer freeze", "expiresAt": IN_A_MONTH}, "dashboard": None},
    "status": "suspended",
    "acknowledgeDrift": True,
    "ring": "staging",
}
PROMOTION_RULE: dict[str, Any] = {"minSuccessPercent": 90, "minBakeSeconds": 3600, "noHalt": True}


def _component(world: World) -> dict[str, str]:
    world.make_customers(2)
    return {"component": "api"}


def _promotion_rule(world: World) -> dict[str, str]:
    world.sql("INSERT INTO promotion_rules (component, min_success_percent, min_bake_seconds) VALUES ('api', 90, 0)")
    return {"component": "api"}


TARGETS: dict[str, Target] = {
    "POST /api/upgrades/deploy": Target(_fleet, 202, body=DEPLOY, examples=DEPLOY_EXAMPLES),
    "GET /api/upgrades": Target(
        _listed, 200, query={"component": "api", "status": "pending", "before": "2147483647", "limit": "50"}
    ),
    "GET /api/upgrades/{upgradeId}/status": Target(_pending, 200),
    "GET /api/upgrades/{upgradeId}/analysis": Target(_pending, 200),
    "GET /api/upgrades/{upgradeId}/logs": Target(
        _pending,
        200,
        query={"status": "pending", "operation": "upgrade", "customerId": "cust_0001", "limit": "10", "offset": "0"},
    ),
    "GET /api/upgrades/{upgradeId}/logs/{logId}/output": Target(_helm_output, 200),
    "POST /api/upgrades/{upgradeId}/continue": Target(_awaiting_continue, 200),
    "POST /api/upgrades/{upgradeId}/rollback/{customerId}": Target(_completed_customer, 202, body={"force": True}),
    "POST /api/upgrades/{upgradeId}/abort": Target(_pending, 202, body={"rollback": True, "reason": "pager went off"}),
    "POST /api/upgrades/{upgradeId}/rollback": Target(_finished, 202, body={"maxConcurrency": 2, "force": False}),
    "POST /api/upgrades/{upgradeId}/resume": Target(
        _halted, 202, body={"maxConcurrency": 2, "bakeSeconds": 0, "retryFailed": True}
    ),
    "GET /api/queue/stats": Target(_listed, 200),
    "GET /api/queue/jobs/{jobId}": Target(_job, 200),
    "POST /api/upgrades/plan": Target(_fleet, 200, body=DEPLOY, examples=DEPLOY_EXAMPLES),
    "GET /api/customers": Target(
        _labelled_fleet,
        200,
        query={
            "component": "api",
            "version": "v1.1.0",
            "label": "tier=gold",
            "status": "active",
            "drift": "false",
            "pinned": "false",
            "cursor": "cust_0001",
            "limit": "50",
            "ring": "production",
        },
    ),  # fmt: skip
    "GET /api/customers/{customerId}": Target(_customer, 200, query={"limit": "10"}),
    "PATCH /api/customers/{customerId}": Target(_customer, 200, body=PATCH),
    "POST /api/customers/sync": Target(_fleet, 202),
    "GET /api/customers/sync/{syncId}": Target(_sync, 200),
    "GET /api/fleet": Target(_fleet, 200),
    "GET /api/fleet/images": Target(_fleet, 200),
    "GET /api/compatibility-rules": Target(_rules, 200),
    "POST /api/compatibility-rules": Target(_fleet, 201, body=RULE),
    "DELETE /api/compatibility-rules/{ruleId}": Target(_rule, 200),
    "GET /api/promotions": Target(_fleet, 200, query={"component": "api", "version": "v1.2.0"}),
    "GET /api/promotion-rules": Target(_fleet, 200),
    "PUT /api/promotion-rules/{component}": Target(
        _component, 200, body=PROMOTION_RULE, checked_again=frozenset({"minSuccessPercent", "minBakeSeconds"})
    ),
    "DELETE /api/promotion-rules/{component}": Target(_promotion_rule, 200),
    "GET /api/promotion-rules/{component}/history": Target(_promotion_rule, 200),
}

# ----------------------------------------------------------------------------- hand-written cases
HOSTILE_VERSIONS = [
    "v1,2", "v1=2", "v1[0]", "v1 2", " v1", "v1\n", "v1\nmalicious", "$(reboot)", "`id`", "v1;rm -rf /", "a" * 129,
    "-v1", ".v1", "", "v1/2", "v1\\2", "v1\t", "v1\x00", "v1{2}", "v1'2", 'v1"2', "v1|2", "ｖ1.2.0", "v1.2.0\u200b",
    "v1:latest", "v1@sha256", "--set=x", "*", "../v1",
]  # fmt: skip


def _deploy(name: str, field: str, body: Any) -> Case:
    return Case("POST /api/upgrades/deploy", name, "body", field, body=body)


def _patch(name: str, field: str, body: Any) -> Case:
    return Case("PATCH /api/customers/{customerId}", name, "body", field, body=body)


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in DEPLOY.items() if k != key}


HAND_WRITTEN: list[Case] = [
    *(_deploy(f"version {v!r}", "version", {**DEPLOY, "version": v}) for v in HOSTILE_VERSIONS),
    _deploy("version number", "version", {**DEPLOY, "version": 120}),
    _deploy("version null", "version", {**DEPLOY, "version": None}),
    _deploy("version list", "version", {**DEPLOY, "version": ["v1"]}),
    _deploy("unknown component", "component", {**DEPLOY, "component": "billing"}),
    _deploy("component uppercase", "component", {**DEPLOY, "component": "API"}),
    _deploy("component with space", "component", {**DEPLOY, "component": "api "}),
    _deploy("component missing", "component", _without("component")),
    _deploy("version missing", "version", _without("version")),
    _deploy("strategy missing", "strategy", _without("strategy")),
    _deploy("unknown strategy", "strategy", {**DEPLOY, "strategy": "bluegreen"}),
    _deploy("canaryPercent 0", "canaryPercent", {**DEPLOY, "canaryPercent": 0}),
    _deploy("canaryPercent 101", "canaryPercent", {**DEPLOY, "canaryPercent": 101}),
    _deploy("canaryPercent 'ten'", "canaryPercent", {**DEPLOY, "canaryPercent": "ten"}),
    _deploy("canaryPercent '10'", "canaryPercent", {**DEPLOY, "canaryPercent": "10"}),
    _deploy("canaryPercent 10.5", "canaryPercent", {**DEPLOY, "canaryPercent": 10.5}),
    _deploy("canaryPercent true", "canaryPercent", {**DEPLOY, "canaryPercent": True}),
    _deploy("batchSize huge", "batchSize", {**DEPLOY, "strategy": "batch", "batchSize": 10**12}),
    _deploy("misspelt canaryPercent", "canarypercent", {**DEPLOY, "canarypercent": 10}),
    _deploy("customer id with /", "customerIds", {**DEPLOY, "customerIds": ["cust/../x"]}),
    _deploy("customer id ..", "customerIds", {**DEPLOY, "customerIds": [".."]}),
    _deploy("customer id with dot", "customerIds", {**DEPLOY, "customerIds": ["cust.abc"]}),
    _deploy("customer id cyrillic look-alike", "customerIds", {**DEPLOY, "customerIds": ["сust_abc123"]}),
    _deploy("customer id fullwidth", "customerIds", {**DEPLOY, "customerIds": ["ｃust_abc123"]}),
    _deploy("customer id with newline", "customerIds", {**DEPLOY, "customerIds": ["cust_abc\n"]}),
    _deploy("customer id too long", "customerIds", {**DEPLOY, "customerIds": ["c" * 64]}),
    _deploy("customer ids duplicated", "customerIds", {**DEPLOY, "customerIds": ["cust_0001", "cust_0001"]}),
    _deploy("label value with space", "labels", {**DEPLOY, "labels": {"tier": "gold plus"}}),
    _deploy("label key with space", "labels", {**DEPLOY, "labels": {"ti er": "gold"}}),
    _deploy("failureThreshold both", "failureThreshold", {**DEPLOY, "failureThreshold": {"percent": 10, "count": 1}}),
    _deploy("failureThreshold empty", "failureThreshold", {**DEPLOY, "failureThreshold": {}}),
    _deploy("failureThreshold null percent", "failureThreshold", {**DEPLOY, "failureThreshold": {"percent": None}}),
    _deploy("failureThreshold percent 150", "failureThreshold", {**DEPLOY, "failureThreshold": {"percent": 150}}),
    _deploy("healthCheck path traversal", "healthCheck.httpPath", {**DEPLOY, "healthCheck": {"httpPath": "/../admin"}}),
    _deploy("healthCheck path ends in ..", "healthCheck.httpPath", {**DEPLOY, "healthCheck": {"httpPath": "/a/.."}}),
    _deploy("healthCheck path without /", "healthCheck.httpPath", {**DEPLOY, "healthCheck": {"httpPath": "healthz"}}),
    _deploy("healthCheck path with query", "healthCheck.httpPath", {**DEPLOY, "healthCheck": {"httpPath": "/h?x=$(id)"}}),
    _deploy("healthCheck bad service", "healthCheck.service", {**DEPLOY, "healthCheck": {"service": "Bad_Name"}}),
    _deploy("healthCheck port 65536", "healthCheck.port", {**DEPLOY, "healthCheck": {"port": "65536"}}),
    _deploy("healthCheck metadata URL", "healthCheck.url", {**DEPLOY, "healthCheck": {"url": "http://169.254.169.254/"}}),
    Case("GET /api/upgrades", "before beyond PostgreSQL INT", "before", "before", query={"before": "5307506016"}),
    Case("GET /api/upgrades/{upgradeId}/status", "id beyond INT", "upgradeId", "upgradeId", path={"upgradeId": "2147483648"}),
    Case("POST /api/upgrades/{upgradeId}/abort", "rollback 'yes'", "body", "rollback", body={"rollback": "yes"}),
    Case("POST /api/upgrades/{upgradeId}/abort", "rollback 1", "body", "rollback", body={"rollback": 1}),
    Case("POST /api/upgrades/{upgradeId}/abort", "reason 501 characters", "body", "reason", body={"reason": "x" * 501}),
    Case("POST /api/upgrades/{upgradeId}/abort", "force", "body", "force", body={"force": True}),
    Case("POST /api/upgrades/{upgradeId}/abort", "list-wrapped", "body", "body", body=[{"rollback": True}], status=400),
    Case("POST /api/upgrades/{upgradeId}/abort", "null", "body", "body", body=Raw("null"), status=400),
    Case("POST /api/upgrades/{upgradeId}/rollback", "list-wrapped", "body", "body", body=[{"maxConcurrency": 2}], status=400),
    Case("POST /api/upgrades/{upgradeId}/rollback", "null", "body", "body", body=Raw("null"), status=400),
    Case("POST /api/upgrades/{upgradeId}/rollback", "maxConcurrency '5'", "body", "maxConcurrency", body={"maxConcurrency": "5"}),
    Case("POST /api/upgrades/{upgradeId}/rollback", "customers", "body", "customers", body={"customers": ["cust_0001"]}),
    *(_patch(name, field, body) for name, field, body in [
        ("nothing to change", "body", {}),
        ("a null status", "status", {"status": None}),
        ("status decommissioned", "status", {"status": "decommissioned"}),
        ("acknowledgeDrift false", "acknowledgeDrift", {"acknowledgeDrift": False}),
        ("label key with space", "labels", {"labels": {"ti er": "gold"}}),
        ("label value with $(id)", "labels", {"labels": {"tier": "$(id)"}}),
        ("pins for an unknown component", "pins.billing", {"pins": {"billing": None}}),
        ("pins naming nothing", "pins", {"pins": {}}),
        ("pin without reason", "pins.api.reason", {"pins": {"api": {"expiresAt": IN_A_MONTH}}}),
        ("pin reason with NUL", "pins.api.reason", {"pins": {"api": {"reason": "a\x00", "expiresAt": IN_A_MONTH}}}),
        ("pin expiry without offset", "pins.api.expiresAt", {"pins": {"api": {"reason": "x", "expiresAt": "2030-01-01T00:00:00"}}}),
        ("pin version with shell", "pins.api.version", {"pins": {"api": {"version": "v1;rm", "reason": "x", "expiresAt": IN_A_MONTH}}}),
        ("window zone path", "maintenanceWindow.timezone", {"maintenanceWindow": {**WINDOW, "timezone": "../etc/passwd"}}),
        ("window days twice", "maintenanceWindow.days", {"maintenanceWindow": {**WINDOW, "days": ["sat", "sat"]}}),
        ("window at 24:00", "maintenanceWindow.start", {"maintenanceWindow": {**WINDOW, "start": "24:00"}}),
        ("window of 5 minutes", "maintenanceWindow.durationMinutes", {"maintenanceWindow": {**WINDOW, "durationMinutes": 5}}),
    ]),
    Case("GET /api/customers", "label without a value", "label", "label", query={"label": "tier"}),
    Case("GET /api/customers", "label selector set-based", "label", "label", query={"label": "tier in (gold)"}),
    Case("POST /api/upgrades/deploy", "Idempotency-Key with a space", "idempotency-key", "Idempotency-Key",
         headers={"Idempotency-Key": "my key"}),
    Case("POST /api/upgrades/plan", "includePinned 'yes'", "body", "includePinned", body={**DEPLOY, "includePinned": "yes"}),
]  # fmt: skip


def cases_for(key: str) -> list[Case]:
    return unique_cases([c for c in HAND_WRITTEN if c.operation == key] + cases_from_document(key, TARGETS[key]))


ALL_CASES = {key: cases_for(key) for key in TARGETS}
KEYS = sorted(TARGETS)


@pytest.fixture
def world(make_customers, sql, fake_workflow, fake_launcher, database_url) -> World:
    return World(make_customers, sql, fake_workflow, fake_launcher, database_url)


def test_every_route_has_a_target():
    # A new route gets the document's hostile cases as soon as it has a target here.
    assert set(TARGETS) == set(OPERATIONS), "routes without a hostile-input target: " + ", ".join(
        sorted(set(OPERATIONS) - set(TARGETS))
    )
    assert {case.operation for case in HAND_WRITTEN} <= set(TARGETS)


def test_every_route_gets_a_body_of_every_wrong_json_type():
    # A route that takes no body included: it must refuse one, not ignore it (issue 27: /continue).
    kinds = {"body wrapped in a list", "body is an empty list", "body is null", "body is a string",
             "body is a number", "body is a float", "body is true"}  # fmt: skip
    for key in KEYS:
        refused = {case.name for case in ALL_CASES[key] if case.field == "body" and case.status == 400}
        assert kinds <= refused, f"{key}: no case for {sorted(kinds - refused)}"


def test_every_unique_items_property_has_a_duplicate_case():
    # Given every body property whose schema says uniqueItems (customerIds, steps, maintenanceWindow.days, ...)
    for key in KEYS:
        body = operation_doc(key).get("requestBody")
        if body is None:
            continue
        schema = resolve(body["content"]["application/json"]["schema"])
        wanted = {".".join(path) for path in unique_items_properties(schema)}
        # Then each has a case whose list repeats an item, refused naming that property
        covered = {case.field for case in ALL_CASES[key] if "with a duplicate" in case.name}
        assert wanted == covered, key
    assert {"steps", "customerIds"} <= {c.field for c in ALL_CASES["POST /api/upgrades/plan"] if "duplicate" in c.name}


@pytest.mark.parametrize("key", [k for k in KEYS if TARGETS[k].examples])
def test_each_example_body_is_accepted(world, key):
    # The duplicate-item cases start from these bodies: only the duplicate may be wrong in them.
    target = TARGETS[key]
    for dotted, example in target.examples.items():
        world.reset()
        params = target.setup(world)
        outcome = request(key, dataclasses.replace(target, body=example), params)
        assert outcome.status == target.success, (dotted, outcome.body)


@pytest.mark.parametrize("key", KEYS)
def test_the_valid_request_on_the_target_succeeds(world, key):
    # The target is a state the route accepts: only validation can refuse the cases below.
    target = TARGETS[key]
    params = target.setup(world)
    outcome = request(key, target, params)
    assert outcome.status == target.success, outcome.body


@pytest.mark.parametrize("key", KEYS)
def test_hostile_inputs_are_refused_naming_the_field_and_nothing_changes(world, database_url, key):
    """Breakage tried (each caught here): JsonObjectBodyValidation.handler without `_refuse_any_body`
    (main: a route without a body never looks at one): /continue answered 200 to `[{"x": 1}]` and
    released the gate, /customers/sync started a sync; `_get_body` without its JSON-object check:
    /abort accepted `[{"rollback": true}]` (202, aborted), GETs answered 200 to `[]`, numbers crashed
    the handler (502); DeployRequest._cumulative allowing duplicate steps: "steps with a duplicate"
    answered 502 on /plan."""
    target = TARGETS[key]
    params = target.setup(world)
    before, recorded = snapshot(database_url), world.recorded()
    problems = []
    for case in ALL_CASES[key]:
        outcome = request(key, target, params, case)
        problem = refusal_problem(outcome, case)
        if problem is None and snapshot(database_url) != before:
            problem = "refused, but the database changed"
        if problem is None and world.recorded() != recorded:
            problem = "refused, but Step Functions was called"
        if problem is not None:
            problems.append(f"{case.name}: {problem}")
            before, recorded = snapshot(database_url), world.recorded()
    assert problems == [], f"{len(problems)} of {len(ALL_CASES[key])} cases of {key}:\n" + "\n".join(problems)


@pytest.mark.parametrize("key", [k for k in KEYS if ALL_CASES[k]])
def test_without_its_validation_every_case_gets_through(world, database_url, key):
    # Given the route with one input's validation removed at a time (pattern, bounds or model)
    target = TARGETS[key]
    refused_anyway = []
    inputs = sorted({case.input for case in ALL_CASES[key]})
    still_open = []
    for input_name in inputs:
        with validation_removed(key, input_name):
            for case in [c for c in ALL_CASES[key] if c.input == input_name]:
                world.reset()
                params = target.setup(world)
                problem = refusal_problem(request(key, target, params, case), case)
                if case.field.split(".")[0] in target.checked_again:
                    # Then a field the domain checks again is still refused, naming the field
                    if problem is not None:
                        still_open.append(f"{case.name}: {problem}")
                # Then the case is no longer refused as the suite demands: it tests that validation
                elif problem is None:
                    refused_anyway.append(case.name)
    total = len(ALL_CASES[key])
    print(
        f"mutation {key}: validation removed for {', '.join(inputs)} -> {total - len(refused_anyway)}/{total} cases fail"
    )
    assert refused_anyway == [], f"{key}: refused even without their validation: {refused_anyway}"
    assert still_open == [], f"{key}: fields the domain checks again got through: {still_open}"
