"""Static IAM check: for every function in template.yaml, the AWS calls its code can make (from the code,
tests/iam/callgraph.py + upgrader/infra/aws_calls.py) equal what the template grants it (SAM's transform,
tests/iam/grants.py), in every configuration, at action and resource level.

The mutation tests change a copy of the parsed template and show the check fails both ways: a grant
removed (the code's call would be denied) and a grant added that no code uses.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
from upgrader.infra.aws_calls import AWS_CALLS

from tests.iam.callgraph import FUNCTIONS, PACKAGE_ROOT, Codebase
from tests.iam.check import codebase, declaration_problems, wiring_problems
from tests.iam.grants import arn_matches
from tests.support.sam import sam_transform
from tests.support.template import functions_by_folder, load_template

STATE_MACHINE = {
    "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-upgrade"
}


def policies(template: dict[str, Any], function: str) -> list[Any]:
    return template["Resources"][function]["Properties"].setdefault("Policies", [])


def without_database_access(template: dict[str, Any]) -> None:
    # The fault issue 9 found: /api/queue/stats reads PostgreSQL but the function may not.
    policies(template, "ApiQueueFunction").remove({"Ref": "DatabaseClientPolicy"})


def without_start_execution(template: dict[str, Any]) -> None:
    statements = policies(template, "ApiDeployFunction")[1]["Statement"]
    statements[:] = [s for s in statements if s.get("Sid") != "StartUpgradeExecution"]


def without_eks_access(template: dict[str, Any]) -> None:
    statements = policies(template, "StartHelmJobFunction")[1]["Statement"]
    statements[:] = [s for s in statements if "IsEksMode" not in str(s)]


def with_start_execution_on_a_reader(template: dict[str, Any]) -> None:
    policies(template, "ApiUpgradesFunction").append(
        {"Statement": [{"Effect": "Allow", "Action": "states:StartExecution", "Resource": STATE_MACHINE}]}
    )


def with_database_access_on_a_cluster_worker(template: dict[str, Any]) -> None:
    policies(template, "CheckRolloutFunction").append({"Ref": "DatabaseClientPolicy"})


def with_start_execution_on_another_machine(template: dict[str, Any]) -> None:
    statements = policies(template, "ApiDeployFunction")[1]["Statement"]
    (start,) = [s for s in statements if s.get("Sid") == "StartUpgradeExecution"]
    start["Resource"] = {"Fn::Sub": STATE_MACHINE["Fn::Sub"].replace("-upgrade", "-other")}


def with_a_policy_template(template: dict[str, Any]) -> None:
    policies(template, "ApiUpgradesFunction").append({"S3ReadPolicy": {"BucketName": {"Ref": "ManifestBucket"}}})


def with_a_connector(template: dict[str, Any]) -> None:
    template["Resources"]["UpgradesReadManifests"] = {
        "Type": "AWS::Serverless::Connector",
        "Properties": {
            "Source": {"Id": "ApiUpgradesFunction"},
            "Destination": {"Id": "ManifestBucket"},
            "Permissions": ["Read"],
        },
    }


def without_managed_prometheus_query(template: dict[str, Any]) -> None:
    statements = template["Resources"]["AnalysisMetricsReaderPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statements[:] = [s for s in statements if "QueryManagedPrometheus" not in str(s)]


def with_managed_prometheus_on_another_workspace(template: dict[str, Any]) -> None:
    statements = template["Resources"]["AnalysisMetricsReaderPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (query,) = [s for s in statements if "QueryManagedPrometheus" in str(s)]
    query["Fn::If"][1]["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:aps:${AWS::Region}:${AWS::AccountId}:workspace/ws-another"
    }


def with_a_new_function_without_grants(template: dict[str, Any]) -> None:
    # A function added later is checked like the others: no list of functions to update.
    new = copy.deepcopy(template["Resources"]["ApiQueueFunction"])
    new["Properties"]["Policies"] = []
    new["Properties"].pop("Events")
    template["Resources"]["QueueReportFunction"] = new


MUTATIONS = [
    without_database_access,
    without_start_execution,
    without_eks_access,
    with_start_execution_on_a_reader,
    with_database_access_on_a_cluster_worker,
    with_start_execution_on_another_machine,
    with_a_policy_template,
    with_a_connector,
    without_managed_prometheus_query,
    with_managed_prometheus_on_another_workspace,
]


@pytest.fixture(scope="module")
def checked() -> dict[str, list[str]]:
    """The check's findings for the real template and for each mutated copy (one SAM transform run)."""
    original = load_template()
    templates = {"original": original}
    for mutate in MUTATIONS:
        templates[mutate.__name__] = copy.deepcopy(original)
        mutate(templates[mutate.__name__])
    transformed = dict(zip(templates, sam_transform(list(templates.values())), strict=True))
    return {name: wiring_problems(templates[name], transformed[name]) for name in templates}


def test_every_function_is_granted_exactly_the_calls_its_code_can_make(checked):
    assert checked["original"] == []


def test_every_aws_call_of_the_code_is_declared_with_its_action():
    assert declaration_problems(codebase()) == []


# -- a grant removed: the call would be denied ---------------------------------------------------------------
def test_fails_when_a_function_that_reads_postgresql_may_not(checked):
    assert checked["without_database_access"] == [
        # the configurations it occurs in, without the parameters it does not depend on (ClusterMode...)
        "ApiQueueFunction: missing grant rds-db:connect on (its resource), called by "
        "upgrader.infra.connection.iam_auth_token [ExistingDatabaseSecretArn='']",
        "ApiQueueFunction: missing grant secretsmanager:GetSecretValue on example-existingdatabasesecretarn, called by "
        "upgrader.infra.connection.read_database_secret [ExistingDatabaseSecretArn='example-existingdatabasesecretarn']",
    ]


def test_fails_when_the_deploy_function_may_not_start_executions(checked):
    (problem,) = checked["without_start_execution"]
    assert problem.startswith("ApiDeployFunction: missing grant states:StartExecution on arn:aws:states:")
    assert problem.endswith("called by upgrader.infra.workflow.StepFunctionsGateway.start [every configuration]")


def test_fails_only_in_the_configuration_that_needs_the_removed_grant(checked):
    (problem,) = checked["without_eks_access"]
    assert problem.startswith("StartHelmJobFunction: missing grant eks:DescribeCluster on arn:aws:eks:")
    assert "ClusterMode='eks'" in problem and "kubeconfig" not in problem and "url" not in problem


def test_a_signed_http_call_needs_its_grant_too(checked):
    # Amazon Managed Prometheus' query API is HTTP signed with SigV4, not a boto3 call: SIGNED_HTTP names the signer
    workspace = "arn:aws:aps:us-east-1:123456789012:workspace/example-analysisprometheusworkspaceid"
    assert checked["without_managed_prometheus_query"] == [
        f"{function}: missing grant aps:QueryMetrics on {workspace}, called by "
        "upgrader.analysis.configured.providers_for [AnalysisPrometheusAuth='sigv4']"
        for function in ("AnalyzeWaveFunction", "ApiUpgradesFunction")
    ]


def test_managed_prometheus_is_granted_on_the_workspace_queried(checked):
    problems = checked["with_managed_prometheus_on_another_workspace"]
    assert [p.split(" on ")[0] for p in problems] == [
        "AnalyzeWaveFunction: missing grant aps:QueryMetrics",
        "AnalyzeWaveFunction: unused grant aps:QueryMetrics",
        "ApiUpgradesFunction: missing grant aps:QueryMetrics",
        "ApiUpgradesFunction: unused grant aps:QueryMetrics",
    ]


# -- a grant added that no code uses -------------------------------------------------------------------------
def test_fails_when_a_function_may_start_executions_it_never_starts(checked):
    (problem,) = checked["with_start_execution_on_a_reader"]
    assert problem.startswith("ApiUpgradesFunction: unused grant states:StartExecution on arn:aws:states:")


def test_fails_when_a_function_that_never_touches_postgresql_may_connect(checked):
    problems = checked["with_database_access_on_a_cluster_worker"]
    assert [p.split(" on ")[0] for p in problems] == [
        "CheckRolloutFunction: unused grant rds-db:connect",
        "CheckRolloutFunction: unused grant secretsmanager:GetSecretValue",
    ]


def test_fails_both_ways_when_a_grant_names_the_wrong_resource(checked):
    problems = checked["with_start_execution_on_another_machine"]
    assert [p.split(" on ")[0] for p in problems] == [
        "ApiDeployFunction: missing grant states:StartExecution",
        "ApiDeployFunction: unused grant states:StartExecution",
    ]
    assert "stateMachine:stack-other" in problems[1]


def test_sam_policy_templates_are_expanded_to_their_actions(checked):
    actions = {p.split(" on ")[0].rsplit(" ", 1)[1] for p in checked["with_a_policy_template"]}
    assert {"s3:GetObject", "s3:ListBucket"} <= actions
    assert all(p.startswith("ApiUpgradesFunction: unused grant") for p in checked["with_a_policy_template"])


def test_connectors_count_as_grants(checked):
    problems = checked["with_a_connector"]
    assert problems and all(p.startswith("ApiUpgradesFunction: unused grant s3:") for p in problems)


def test_a_new_function_is_checked_without_being_listed_anywhere():
    template = load_template()
    with_a_new_function_without_grants(template)

    problems = wiring_problems(template)

    assert problems and all(p.startswith("QueueReportFunction: missing grant") for p in problems)
    assert "QueueReportFunction" in {logical_id for logical_id, _ in functions_by_folder(template).values()}


# -- the code side -------------------------------------------------------------------------------------------
@pytest.fixture
def code_copy(tmp_path: Path) -> tuple[Path, Path]:
    package, functions = tmp_path / "layers" / "shared", tmp_path / "functions"
    shutil.copytree(PACKAGE_ROOT / "upgrader", package / "upgrader")
    shutil.copytree(FUNCTIONS, functions)
    return package, functions


def test_an_undeclared_boto3_call_fails_the_check(code_copy):
    package, functions = code_copy
    workflow = package / "upgrader" / "infra" / "workflow.py"
    workflow.write_text(
        workflow.read_text()
        + "\n\ndef history(client, arn):\n    return client.get_execution_history(executionArn=arn)\n"
    )

    problems = declaration_problems(Codebase(package, functions))

    assert (
        len(problems) == 1
        and problems[0].startswith(
            "undeclared AWS call upgrader.infra.workflow.history -> get_execution_history (layers/shared/upgrader/infra/workflow.py:"
        )
        is False
        or "undeclared AWS call upgrader.infra.workflow.history -> get_execution_history" in problems[0]
    )


def test_a_new_service_client_is_found_too(code_copy):
    package, functions = code_copy
    (package / "upgrader" / "outbox.py").write_text(
        "import boto3\n\n\ndef publish(entries):\n    boto3.client('events').put_events(Entries=entries)\n"
    )

    problems = declaration_problems(Codebase(package, functions))

    assert len(problems) == 1 and "undeclared AWS call upgrader.outbox.publish -> put_events" in problems[0]


def test_a_declaration_whose_call_is_gone_fails_the_check(code_copy):
    package, functions = code_copy
    workflow = package / "upgrader" / "infra" / "workflow.py"
    workflow.write_text(workflow.read_text().replace("self._client.list_map_runs(executionArn=arn)", "{}"))

    problems = declaration_problems(Codebase(package, functions))

    assert problems == [
        "upgrader/infra/aws_calls.py declares upgrader.infra.workflow.StepFunctionsGateway.describe -> list_map_runs, "
        "which no code calls"
    ]


def test_declared_actions_must_be_the_ones_the_methods_need(monkeypatch):
    wrong = [c if c.method != "start_execution" else type(c)(**{**_fields(c), "action": "states:StartSyncExecution"})
             for c in AWS_CALLS]  # fmt: skip
    monkeypatch.setattr("tests.iam.check.AWS_CALLS", tuple(wrong))

    assert declaration_problems(codebase()) == [
        "upgrader.infra.workflow.StepFunctionsGateway.start -> start_execution needs one of ['states:StartExecution'], "
        "declared states:StartSyncExecution"
    ]


def test_reachability_follows_the_handler_not_the_imports():
    code = codebase()
    reached = {
        folder: {s.site for s in code.aws_call_sites() if s.site in code.reachable_from(f"functions.{folder}.app")}
        for folder in ("api_upgrades", "check_rollout", "prepare_wave")
    }
    # api_upgrades imports the factory that builds the Step Functions client, but never asks for it; its plan
    # runs a deploy's analysis checks once (CloudWatch and Prometheus, signed or with a token, among the providers)
    # and its images' pre-flight (ECR, the registries' credentials).
    assert reached["api_upgrades"] == {
        "upgrader.infra.connection.iam_auth_token",
        "upgrader.infra.connection.read_database_secret",
        "upgrader.analysis.providers.cloudwatch.CloudWatchProvider._metric_data",
        "upgrader.analysis.providers.cloudwatch.CloudWatchProvider._alarms",
        "upgrader.analysis.configured.providers_for",
        "upgrader.analysis.configured.prometheus_token",
        "upgrader.images.ecr.EcrRegistry.resolve",
        "upgrader.images.credentials.read_registry_credentials",
    }
    assert "upgrader.infra.connection.read_database_secret" not in reached["check_rollout"]
    assert "upgrader.rollout.orchestration.parent_steps.prepare_wave" in reached["prepare_wave"]


@pytest.mark.parametrize(
    ("arn", "pattern", "matches"),
    [
        ("arn:aws:states:r:1:execution:sm:upgrade-1", "arn:aws:states:r:1:execution:sm:*", True),
        ("arn:aws:states:r:1:execution:sm:upgrade-1", "arn:aws:states:r:1:execution:sm/*", False),
        ("arn:aws:s3:::bucket/runs/x.json", "arn:aws:s3:::bucket/*", True),
        ("arn:aws:s3:::bucket2/x", "arn:aws:s3:::bucket/*", False),
        ("arn:aws:eks:r:1:cluster/prod", "arn:aws:eks:r:1:cluster/pro?", True),
    ],
)
def test_resource_patterns_match_like_iam(arn, pattern, matches):
    assert arn_matches(arn, pattern) is matches


def _fields(call: Any) -> dict[str, Any]:
    return {name: getattr(call, name) for name in call.__dataclass_fields__}


def test_a_classs_own_field_read_through_self_calls_no_method_of_that_name(code_copy):
    # `self.execution_status` of a record (a declared field) reads a value; a method of that name of another class the function
    # instantiates (the workflow gateway's, which calls DescribeExecution) is not reached by it. A field that is
    # not declared still counts as a possible call (the analysis stays conservative).
    package, functions = code_copy
    (package / "upgrader" / "trace.py").write_text(
        "from dataclasses import dataclass\n\n\n@dataclass\nclass Trace:\n    execution_status: str\n\n"
        "    def halted(self):\n        return self.execution_status == 'halted'\n\n\n"
        "class Loose:\n    def halted(self):\n        return self.execution_status == 'halted'\n"
    )
    (functions / "api_deploy" / "probe.py").write_text(
        "from upgrader.infra.workflow import StepFunctionsGateway\nfrom upgrader.trace import Trace\n\n\n"
        "def run(client):\n    StepFunctionsGateway(client, 'arn')\n    return Trace('x').halted()\n"
    )
    code = Codebase(package, functions)
    reached = code.reachable_from("functions.api_deploy.probe")
    assert "upgrader.infra.workflow.StepFunctionsGateway.execution_status" not in reached
    (functions / "api_deploy" / "probe.py").write_text(
        "from upgrader.infra.workflow import StepFunctionsGateway\nfrom upgrader.trace import Loose\n\n\n"
        "def run(client):\n    StepFunctionsGateway(client, 'arn')\n    return Loose().halted()\n"
    )
    assert "upgrader.infra.workflow.StepFunctionsGateway.execution_status" in Codebase(
        package, functions
    ).reachable_from("functions.api_deploy.probe")
