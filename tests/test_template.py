"""Static checks of template.yaml against docs/contracts.md, the ASL files and the security baseline."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sam import require_sam, run_with_sam
from tests.support.template import (
    ROOT,
    TEMPLATE,
    as_list,
    expand_conditionals,
    functions_by_folder,
    load_template,
    resources_of,
)
from tests.support.tools import require_module, require_tool

CONTRACTS = ROOT / "docs" / "contracts.md"
KUBERNETES_FUNCTIONS = {"start_helm_job", "check_helm_job", "check_rollout", "reconcile_runs", "sync_customers"}
# SAM policy templates whose expansion has no wildcard action; anything else must be spelled out.
ALLOWED_POLICY_TEMPLATES = {"LambdaInvokePolicy"}


def contract_functions() -> dict[str, dict[str, Any]]:
    """folder -> {logical_id, routes: {(METHOD, path)}} from the table in docs/contracts.md."""
    functions: dict[str, dict[str, Any]] = {}
    row = re.compile(r"^\|\s*([a-z_]+)\s*\|\s*([A-Za-z]+Function)\s*\|\s*([^|]*)\|")
    for line in CONTRACTS.read_text(encoding="utf-8").splitlines():
        match = row.match(line)
        if not match:
            continue
        folder, logical_id, trigger = match.group(1), match.group(2), match.group(3)
        routes = {(method, path) for method, path in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE)\s+(/[^\s,]+)", trigger)}
        functions[folder] = {"logical_id": logical_id, "routes": routes}
    assert functions, "could not read the Lambda functions table from docs/contracts.md"
    return functions


def contract_substitution_keys() -> set[str]:
    text = CONTRACTS.read_text(encoding="utf-8")
    section = text.split("DefinitionSubstitutions keys:", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"`([A-Za-z]+)`", section))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource, statement) for every IAM policy statement written in the template."""
    for name, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            policies = props.get("Policies", [])
            for policy in policies if isinstance(policies, list) else [policies]:
                if isinstance(policy, dict) and "Statement" in policy:
                    for statement in policy["Statement"]:
                        yield from ((name, s) for s in expand_conditionals(statement))
        elif res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield from ((name, s) for s in expand_conditionals(statement))
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in props["PolicyDocument"]["Statement"]:
                yield from ((name, s) for s in expand_conditionals(statement))


# -- API ---------------------------------------------------------------------------------------------------
def test_every_api_method_requires_aws_iam(template: dict[str, Any]) -> None:
    apis = resources_of(template, "AWS::Serverless::Api")
    assert apis, "the template must declare its REST API"
    for name, api in apis.items():
        assert api["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM", name

    events = 0
    for name, res in resources_of(template, "AWS::Serverless::Function").items():
        for event_name, event in res["Properties"].get("Events", {}).items():
            if event["Type"] != "Api":
                continue
            events += 1
            props = event["Properties"]
            where = f"{name}.{event_name}"
            assert props.get("RestApiId", {}).get("Ref") in apis, f"{where} must use an API with AWS_IAM default"
            authorizer = props.get("Auth", {}).get("Authorizer", "AWS_IAM")
            assert authorizer == "AWS_IAM", f"{where} overrides the authorizer with {authorizer!r}"
    assert events > 0


def test_api_routes_match_the_contract(template: dict[str, Any]) -> None:
    by_folder = functions_by_folder(template)
    for folder, contract in contract_functions().items():
        if folder not in by_folder:
            continue  # reported by test_template_functions_match_the_contract
        _, res = by_folder[folder]
        routes = {
            (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
            for event in res["Properties"].get("Events", {}).values()
            if event["Type"] == "Api"
        }
        assert routes == contract["routes"], folder


# -- IAM ---------------------------------------------------------------------------------------------------
def test_no_policy_statement_allows_a_wildcard_action(template: dict[str, Any]) -> None:
    statements = list(policy_statements(template))
    assert statements
    for name, statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        assert "NotAction" not in statement, f"{name} {statement.get('Sid')}: NotAction is a wildcard"
        for action in as_list(statement["Action"]):
            assert isinstance(action, str) and "*" not in action, f"{name} {statement.get('Sid')}: {action!r}"


def test_only_known_policy_templates_and_only_this_templates_managed_policies(template: dict[str, Any]) -> None:
    own_managed = set(resources_of(template, "AWS::IAM::ManagedPolicy"))
    for kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
        for name, res in resources_of(template, kind).items():
            for policy in as_list(res["Properties"].get("Policies", [])):
                assert isinstance(policy, dict), f"{name}: managed policy {policy!r} (write statements instead)"
                if set(policy) == {"Ref"}:
                    assert policy["Ref"] in own_managed, (
                        f"{name}: {policy['Ref']} is not a managed policy of this template"
                    )
                    continue
                names = set(policy) - {"Statement", "Version"}
                assert names <= ALLOWED_POLICY_TEMPLATES, f"{name}: policy template(s) {names}"


def test_bucket_policy_only_denies(template: dict[str, Any]) -> None:
    for name, res in resources_of(template, "AWS::S3::BucketPolicy").items():
        for statement in res["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Deny", f"{name}: bucket policies here only enforce TLS"


# -- state machine -----------------------------------------------------------------------------------------
def asl_placeholders() -> set[str]:
    files = sorted((ROOT / "statemachine").glob("*.asl.json"))
    assert files, "no statemachine/*.asl.json"
    keys: set[str] = set()
    for path in files:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
        keys |= set(re.findall(r"\$\{([^}]+)\}", text))
    return keys


def test_definition_substitutions_match_the_asl(template: dict[str, Any]) -> None:
    machines = resources_of(template, "AWS::Serverless::StateMachine")
    assert machines
    provided: set[str] = set()
    for res in machines.values():
        provided |= set(res["Properties"].get("DefinitionSubstitutions", {}))
        assert (ROOT / res["Properties"]["DefinitionUri"]).is_file()

    used = asl_placeholders()

    assert used - provided == set(), "ASL placeholders the template does not provide"
    assert provided - used == set(), "DefinitionSubstitutions the ASL never uses"


def test_definition_substitutions_match_the_contract(template: dict[str, Any]) -> None:
    machine = template["Resources"]["UpgradeStateMachine"]["Properties"]
    assert set(machine["DefinitionSubstitutions"]) == contract_substitution_keys()
    assert machine["Type"] == "STANDARD"


# -- functions and layers ----------------------------------------------------------------------------------
def test_template_functions_match_the_contract(template: dict[str, Any]) -> None:
    by_folder = functions_by_folder(template)
    contract = contract_functions()

    assert set(by_folder) == set(contract)
    for folder, (logical_id, res) in by_folder.items():
        assert logical_id == contract[folder]["logical_id"], folder
        assert res["Properties"]["Handler"] == "app.lambda_handler", folder


def test_every_function_folder_has_a_resource_and_every_resource_its_folder(template: dict[str, Any]) -> None:
    by_folder = functions_by_folder(template)
    on_disk = {p.name for p in (ROOT / "functions").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}

    assert on_disk - set(by_folder) == set(), "function folders without a template resource"
    missing = sorted(f for f in by_folder if not (ROOT / "functions" / f / "app.py").is_file())
    assert missing == [], f"template functions whose functions/<folder>/app.py does not exist: {missing}"


def test_kubernetes_layer_only_on_cluster_workers(template: dict[str, Any]) -> None:
    layers = resources_of(template, "AWS::Serverless::LayerVersion")
    assert {"SharedLayer", "KubernetesLayer"} <= set(layers)
    runtime = template["Globals"]["Function"]["Runtime"]
    for name in ("SharedLayer", "KubernetesLayer"):
        assert layers[name]["Properties"]["CompatibleRuntimes"] == [runtime]
        assert layers[name]["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
        assert layers[name]["Metadata"]["BuildMethod"] == "makefile"  # layers/*/Makefile: wheels for Architecture

    for folder, (logical_id, res) in functions_by_folder(template).items():
        attached = {layer["Ref"] for layer in res["Properties"].get("Layers", [])}
        expected = {"SharedLayer", "KubernetesLayer"} if folder in KUBERNETES_FUNCTIONS else {"SharedLayer"}
        assert attached == expected, logical_id


def test_manifest_bucket_is_private_and_encrypted(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ManifestBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert bucket["LifecycleConfiguration"]["Rules"][0]["Status"] == "Enabled"


def test_outputs(template: dict[str, Any]) -> None:
    assert {"ApiUrl", "StateMachineArn", "ManifestBucketName"} <= set(template["Outputs"])


# -- sam validate --lint -----------------------------------------------------------------------------------
def test_sam_validate_lint_passes() -> None:
    result = run_with_sam([require_sam(), "validate", "--lint", "--template-file", str(TEMPLATE)])

    assert result.returncode == 0, f"sam validate --lint failed:\n{result.stdout}\n{result.stderr}"


# -- what a stack delete or a replacing update keeps ---------------------------------------------------------
def _policies(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    return resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")


def test_a_stack_delete_or_replacement_keeps_the_records_the_secret_and_the_audit_trail(template):
    """Every upgrade record and audit trail lives in the created database and the state machine's log group.

    Breakage tried: no DeletionPolicy/UpdateReplacePolicy on DatabaseSecret (as before): fails here and in
    the cfn-lint test below (I3011)."""
    resources = template["Resources"]
    assert _policies(resources["DatabaseCluster"]) == ("Snapshot", "Snapshot")  # the data: a final snapshot
    # an Aurora member instance holds no data of its own (compute on the cluster's volume): nothing to keep
    assert resources["DatabaseInstance"]["Properties"]["DBClusterIdentifier"] == {"Ref": "DatabaseCluster"}
    assert _policies(resources["DatabaseInstance"]) == ("Delete", "Delete")
    assert _policies(resources["DatabaseSecret"]) == ("Retain", "Retain")  # the snapshot's password
    assert _policies(resources["UpgradeStateMachineLogGroup"]) == ("Retain", "Retain")
    stateful = {"AWS::RDS::DBCluster", "AWS::RDS::DBInstance", "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup"}
    unset = [k for k, v in resources.items() if v["Type"] in stateful and None in _policies(v)]
    assert unset == [], "stateful resources without an explicit delete/replace policy"


def test_cfn_lint_with_informational_checks_is_clean():
    """`cfn-lint --include-checks I` (the version pinned in constraints.txt) finds nothing.

    Breakage tried: the DatabaseSecret's policies removed (I3011) and one `!Join ["", ...]` back (I1022):
    each fails here."""
    cfn_lint = require_tool("cfn-lint", str(ROOT / ".venv" / "bin" / "cfn-lint"))
    result = subprocess.run([cfn_lint, "--include-checks", "I", "--", str(TEMPLATE)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, f"cfn-lint --include-checks I:\n{result.stdout}\n{result.stderr}"


def _regions_lacking(resource_types: set[str]) -> dict[str, set[str]]:
    """type -> the regions whose CloudFormation lacks it, from the pinned cfn-lint's region data (E3006)."""
    import cfnlint

    providers = Path(cfnlint.__file__).parent / "data" / "schemas" / "providers"
    lacking: dict[str, set[str]] = {}
    for region_file in sorted(providers.glob("*-*-*.json")):
        known = set(json.loads(region_file.read_text()))
        for missing in resource_types - known:
            lacking.setdefault(missing, set()).add(region_file.stem)
    return lacking


def test_the_readme_names_the_regions_lacking_a_resource_type_and_the_template_makes_those_only_on_request(template):
    """Breakage tried: RDS Proxy made without the CreateDatabase condition (unconditional), and a region dropped
    from the list in docs/explanation/aws.md: each fails here."""
    require_module("cfnlint", "make setup (requirements-dev.txt)")
    types = {
        r["Type"]
        for r in template["Resources"].values()
        if r["Type"].startswith("AWS::") and not r["Type"].startswith("AWS::Serverless::")
    }
    lacking = _regions_lacking(types)
    assert lacking, (
        "cfn-lint's region data knows every type everywhere: the note in docs/explanation/aws.md is out of date"
    )
    page = (ROOT / "docs" / "explanation" / "aws.md").read_text()
    section = page.split("**Regions without some resource types**", 1)[1].split("\n\n")[0]
    named = " ".join(section.split())  # the paragraph, one line
    for resource_type, regions in lacking.items():
        assert f"`{resource_type}`" in named, resource_type
        for region in regions:
            assert region in named, (resource_type, region)
        conditions = {r.get("Condition") for r in template["Resources"].values() if r["Type"] == resource_type}
        assert conditions and None not in conditions, f"{resource_type} is made in every stack"
