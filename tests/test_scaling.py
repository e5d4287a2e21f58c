"""Connections at scale, checked in template.yaml: reserved concurrency for every state machine worker,
the maxConcurrency cap derived from it, and the database reached through RDS Proxy with IAM and TLS.

Workers are found from the ASL (Task states and the functions their substitutions name), so a worker
added later is checked without editing this file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from upgrader.infra.settings import Settings

from tests.support.template import ROOT, load_template, resources_of

PLACEHOLDER = re.compile(r"^\$\{([A-Za-z0-9]+)\}$")


def task_placeholders(states: dict[str, Any], *, in_map: bool = False) -> Iterator[tuple[str, bool]]:
    """(substitution key, runs inside a Map's item processor) for every Lambda Task state."""
    for state in states.values():
        if state["Type"] == "Task":
            target = state.get("Parameters", {}).get("FunctionName") or state["Resource"]
            match = PLACEHOLDER.match(str(target))
            if match:
                yield match.group(1), in_map
        if state["Type"] == "Map":
            processor = state.get("ItemProcessor") or state["Iterator"]
            yield from task_placeholders(processor["States"], in_map=True)
        for branch in state.get("Branches", []):
            yield from task_placeholders(branch["States"], in_map=in_map)


def workers(template: dict[str, Any]) -> dict[str, bool]:
    """Function logical id -> per customer (inside the Distributed Map) or per run."""
    found: dict[str, bool] = {}
    for machine in resources_of(template, "AWS::Serverless::StateMachine").values():
        definition = json.loads((ROOT / machine["Properties"]["DefinitionUri"]).read_text(encoding="utf-8"))
        substitutions = machine["Properties"]["DefinitionSubstitutions"]
        for key, per_customer in task_placeholders(definition["States"]):
            logical_id = substitutions[key]["Fn::GetAtt"][0]
            found[logical_id] = found.get(logical_id, False) or per_customer
    assert found, "no Lambda tasks found in the state machines"
    return found


def test_every_worker_has_reserved_concurrency_from_its_parameter() -> None:
    template = load_template()
    functions = template["Resources"]
    expected = {True: "CustomerWorkerReservedConcurrency", False: "RunWorkerReservedConcurrency"}

    wrong = {
        name: functions[name]["Properties"].get("ReservedConcurrentExecutions")
        for name, per_customer in workers(template).items()
        if functions[name]["Properties"].get("ReservedConcurrentExecutions") != {"Ref": expected[per_customer]}
    }

    assert wrong == {}
    assert {True, False} <= set(workers(template).values())


def test_the_cap_is_the_per_customer_workers_reserved_concurrency_for_every_function() -> None:
    template = load_template()
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    overridden = [
        name
        for name, res in resources_of(template, "AWS::Serverless::Function").items()
        if "MAX_CONCURRENCY_CAP" in res["Properties"].get("Environment", {}).get("Variables", {})
    ]

    assert globals_env["MAX_CONCURRENCY_CAP"] == {"Ref": "CustomerWorkerReservedConcurrency"}
    assert overridden == []


def test_reserved_concurrency_parameters_fit_the_cap_setting() -> None:
    parameters = load_template()["Parameters"]
    bounds = Settings.model_fields["max_concurrency_cap"].metadata
    upper = next(m.le for m in bounds if hasattr(m, "le"))
    for name in ("CustomerWorkerReservedConcurrency", "RunWorkerReservedConcurrency"):
        assert parameters[name]["Type"] == "Number"
        assert parameters[name]["MinValue"] >= 1 and parameters[name]["MaxValue"] <= upper


def test_the_proxy_requires_tls_and_iam_and_fronts_the_created_cluster() -> None:
    resources = load_template()["Resources"]
    proxy = resources["DatabaseProxy"]["Properties"]
    targets = resources["DatabaseProxyTargetGroup"]["Properties"]

    assert proxy["RequireTLS"] is True and proxy["EngineFamily"] == "POSTGRESQL"
    assert [a["IAMAuth"] for a in proxy["Auth"]] == ["REQUIRED"]
    assert targets["DBClusterIdentifiers"] == [{"Ref": "DatabaseCluster"}]
    assert resources["DatabaseProxyTargetGroup"]["DependsOn"] == "DatabaseInstance"


def test_functions_connect_as_the_user_iam_lets_them_connect_as() -> None:
    template = load_template()
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    (statement,) = template["Resources"]["DatabaseClientPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    proxy_grant = statement["Fn::If"][1]
    secret = template["Resources"]["DatabaseSecret"]["Properties"]["GenerateSecretString"]

    assert env["DB_USER"] == {"Fn::If": ["CreateDatabase", {"Ref": "DatabaseUsername"}, ""]}
    assert proxy_grant["Action"] == "rds-db:connect"
    assert proxy_grant["Resource"]["Fn::Sub"][0].endswith(":dbuser:${ProxyId}/${DatabaseUsername}")
    assert proxy_grant["Resource"]["Fn::Sub"][1]["ProxyId"] == {
        "Fn::Select": [6, {"Fn::Split": [":", {"Fn::GetAtt": ["DatabaseProxy", "DBProxyArn"]}]}]
    }
    assert "${DatabaseUsername}" in secret["SecretStringTemplate"]["Fn::Sub"]


def test_with_a_created_database_no_function_is_told_the_secret() -> None:
    env = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert env["DB_SECRET_ARN"] == {"Fn::If": ["CreateDatabase", "", {"Ref": "ExistingDatabaseSecretArn"}]}
    assert env["DB_PROXY_ENDPOINT"] == {"Fn::If": ["CreateDatabase", {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}, ""]}
