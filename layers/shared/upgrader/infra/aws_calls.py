"""Every AWS API call the deployed code can make, declared next to the adapters that make it.

The static IAM check (tests/iam) scans functions/ and this package for boto3 client calls and fails
when one is missing here or when an entry here has no call site left. It then follows each Lambda's
code from functions/<name>/app.py to the call sites it can reach, keeps the calls whose `when` holds
for the environment template.yaml gives the function, and compares them with the IAM policy the
template grants it: every call allowed, every grant used. A new boto3 call needs an entry here, and
the grant in template.yaml; a removed one, both removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from upgrader.infra.connection import database_access
from upgrader.infra.settings import Settings


@dataclass(frozen=True, slots=True)
class Account:
    """Where a function runs: the parts of ARNs that come from the account, not from settings."""

    partition: str
    region: str
    account_id: str


@dataclass(frozen=True, slots=True)
class AwsCall:
    site: str  # the function or method making the call, e.g. "upgrader.infra.workflow.StepFunctionsGateway.start"
    method: str  # the boto3 client method called there (paginators, presigned URLs: the operation)
    action: str  # the IAM action the call needs
    # An example ARN of what the call acts on, built from the function's settings; None: the resource
    # is checked by a dedicated test (RDS IAM auth: the proxy's resource id is not in the settings).
    resource: Callable[[Settings, Account], str] | None
    when: Callable[[Settings], bool]  # the configuration under which the code makes the call
    needs_grant: bool = True  # False: AWS allows the call without any IAM permission


EXAMPLE_RUN = "upgrade-1-0a1b2c3d"


def _always(_: Settings) -> bool:
    return True


def _database(access: str) -> Callable[[Settings], bool]:
    return lambda settings: database_access(settings) == access


def _cluster(mode: str) -> Callable[[Settings], bool]:
    return lambda settings: settings.cluster_mode == mode


def _ecr_repository(site: str, method: str, action: str) -> AwsCall:
    """A call on one ECR repository (an example repository `api`), made while the images' pre-flight is on."""
    return AwsCall(
        site, method, action,
        resource=lambda settings, where: f"arn:{where.partition}:ecr:{where.region}:{where.account_id}:repository/api",
        when=lambda settings: settings.image_preflight != "off",
    )  # fmt: skip


def amp_workspace(url: str) -> str:
    """The workspace of an Amazon Managed Prometheus query URL (`https://aps-workspaces.<region>.amazonaws.com/
    workspaces/<id>`); '' for any other Prometheus."""
    found = re.search(r"/workspaces/([^/?#]+)", url)
    return found.group(1) if found else ""


def _state_machine(settings: Settings, _: Account) -> str:
    return str(settings.upgrade_state_machine_arn)


def _execution(settings: Settings, _: Account) -> str:
    # StepFunctionsGateway.execution_arn: the upgrade's own (parent) execution, named like the job id.
    return str(settings.upgrade_state_machine_arn).replace(":stateMachine:", ":execution:") + f":{EXAMPLE_RUN}"


AWS_CALLS: tuple[AwsCall, ...] = (
    # PostgreSQL (upgrader.infra.connection)
    AwsCall(
        "upgrader.infra.connection.read_database_secret",
        "get_secret_value",
        "secretsmanager:GetSecretValue",
        resource=lambda settings, _: str(settings.db_secret_arn),
        when=_database("secret"),
    ),
    AwsCall(
        "upgrader.infra.connection.iam_auth_token",
        "generate_db_auth_token",
        "rds-db:connect",  # signed locally; the proxy checks the permission when the connection opens
        resource=None,
        when=_database("proxy"),
    ),
    # Step Functions (upgrader.infra.workflow)
    AwsCall(
        "upgrader.infra.workflow.StepFunctionsGateway.start",
        "start_execution",
        "states:StartExecution",
        resource=_state_machine,
        when=_always,
    ),  # fmt: skip
    # Task-token callbacks have no resource type of their own; AWS authorizes them against the state
    # machine that issued the token, so the grant names the state machine. send_failure is also how a
    # failure-budget halt ends a run's wait for its customers' maintenance windows
    # (upgrader.rollout.windows.release_window_waits): the FinishCustomer and ReconcileRuns workers make it too.
    AwsCall(
        "upgrader.infra.workflow.StepFunctionsGateway.send_continue",
        "send_task_success",
        "states:SendTaskSuccess",
        resource=_state_machine,
        when=_always,
    ),  # fmt: skip
    AwsCall(
        "upgrader.infra.workflow.StepFunctionsGateway.send_failure",
        "send_task_failure",
        "states:SendTaskFailure",
        resource=_state_machine,
        when=_always,
    ),  # fmt: skip
    AwsCall(
        "upgrader.infra.workflow.StepFunctionsGateway.execution_counts",
        "list_executions",
        "states:ListExecutions",
        resource=_state_machine,
        when=_always,
    ),  # fmt: skip
    AwsCall(
        "upgrader.infra.workflow.StepFunctionsGateway.describe",
        "describe_execution",
        "states:DescribeExecution",
        resource=_execution,
        when=_always,
    ),  # fmt: skip
    AwsCall(
        "upgrader.infra.workflow.StepFunctionsGateway.describe",
        "list_map_runs",
        "states:ListMapRuns",
        resource=_execution,
        when=_always,
    ),  # fmt: skip
    AwsCall(
        "upgrader.infra.workflow.StepFunctionsGateway.execution_status",
        "describe_execution",
        "states:DescribeExecution",
        resource=_execution,
        when=_always,
    ),  # fmt: skip
    # S3: the wave manifests (upgrader.rollout.orchestration.parent_steps.prepare_wave, key runs/<run>/wave-<n>.json)
    AwsCall(
        "upgrader.rollout.orchestration.parent_steps.prepare_wave",
        "put_object",
        "s3:PutObject",
        resource=lambda settings, where: (
            f"arn:{where.partition}:s3:::{settings.manifest_bucket}/runs/{EXAMPLE_RUN}/wave-0.json"
        ),
        when=_always,
    ),
    # EventBridge: the lifecycle events' custom bus (upgrader.notifications.publisher, the publish_events function)
    AwsCall(
        "upgrader.notifications.publisher.EventBridgeChannel.send",
        "put_events",
        "events:PutEvents",
        resource=lambda settings, where: (
            f"arn:{where.partition}:events:{where.region}:{where.account_id}:event-bus/{settings.event_bus_name}"
        ),
        when=_always,
    ),
    # Secrets Manager: the Slack bot token (upgrader.factory.slack_channel, the notify_slack function)
    AwsCall(
        "upgrader.notifications.slack.read_bot_token",
        "get_secret_value",
        "secretsmanager:GetSecretValue",
        # the secret's full ARN: the name given, then the 6 characters Secrets Manager appends
        resource=lambda settings, _: f"{settings.slack_token_secret_arn}-AbC123",
        when=lambda settings: bool(settings.slack_channel),
    ),
    # Lambda: a sync requested through the API runs in the sync function (upgrader.fleet.sync_launcher)
    AwsCall(
        "upgrader.fleet.sync_launcher.LambdaSyncLauncher.launch",
        "invoke",
        "lambda:InvokeFunction",
        resource=lambda settings, where: (
            f"arn:{where.partition}:lambda:{where.region}:{where.account_id}:function:{settings.sync_function_name}"
        ),
        when=_always,
    ),
    # CloudWatch: the metric analysis' provider (upgrader.analysis.providers.cloudwatch, issue 20): the gate between
    # waves (analyze_wave) and the plan (api_upgrades), both granted AnalysisMetricsReaderPolicy.
    AwsCall(
        "upgrader.analysis.providers.cloudwatch.CloudWatchProvider._metric_data",
        "get_metric_data",
        "cloudwatch:GetMetricData",
        resource=lambda settings, where: "*",  # GetMetricData has no resource-level permission
        when=_always,
    ),
    AwsCall(
        "upgrader.analysis.providers.cloudwatch.CloudWatchProvider._alarms",
        "describe_alarms",
        "cloudwatch:DescribeAlarms",
        resource=lambda settings, where: f"arn:{where.partition}:cloudwatch:{where.region}:{where.account_id}:alarm:*",
        when=_always,
    ),
    # Prometheus for the metric analysis (upgrader.analysis.configured.providers_for, both functions that query it):
    # Amazon Managed Prometheus' query API signed with SigV4 (an HTTP call boto3 has no client for: tests/iam's
    # SIGNED_HTTP names the signer), or a bearer token read from Secrets Manager.
    AwsCall(
        "upgrader.analysis.configured.providers_for",
        "sigv4_signer",
        "aps:QueryMetrics",
        resource=lambda settings, where: (
            f"arn:{where.partition}:aps:{where.region}:{where.account_id}:workspace/"
            f"{amp_workspace(str(settings.analysis_prometheus_url))}"
        ),
        when=lambda settings: settings.analysis_prometheus_sigv4 and bool(settings.analysis_prometheus_url),
    ),
    AwsCall(
        "upgrader.analysis.configured.prometheus_token",
        "get_secret_value",
        "secretsmanager:GetSecretValue",
        # the secret's full ARN: the name given, then the 6 characters Secrets Manager appends
        resource=lambda settings, _: f"{settings.analysis_prometheus_token_secret_arn}-AbC123",
        when=lambda settings: bool(settings.analysis_prometheus_url and settings.analysis_prometheus_token_secret_arn),
    ),
    # The images' pre-flight (upgrader.factory.image_registry, issue 22): api_deploy, the plan (api_upgrades) and
    # the re-check before each wave (prepare_wave), all granted ImageRegistryReaderPolicy. ECR with the
    # function's role; other registries' credentials from a secret when configured.
    _ecr_repository("upgrader.images.ecr.EcrRegistry.resolve", "batch_get_image", "ecr:BatchGetImage"),
    _ecr_repository("upgrader.images.ecr.EcrRegistry.describe", "describe_images", "ecr:DescribeImages"),
    AwsCall(
        "upgrader.images.credentials.read_registry_credentials",
        "get_secret_value",
        "secretsmanager:GetSecretValue",
        resource=lambda settings, _: f"{settings.image_registry_secret_arn}-AbC123",
        when=lambda settings: bool(settings.image_registry_secret_arn) and settings.image_preflight != "off",
    ),
    # Kubernetes access (upgrader.cluster.access)
    AwsCall(
        "upgrader.cluster.access.build_api_client",
        "get_secret_value",
        "secretsmanager:GetSecretValue",
        resource=lambda settings, _: str(settings.kubeconfig_secret_arn),
        when=_cluster("kubeconfig"),
    ),
    AwsCall(
        "upgrader.cluster.access.build_api_client",
        "describe_cluster",
        "eks:DescribeCluster",
        resource=lambda settings, where: (
            f"arn:{where.partition}:eks:{where.region}:{where.account_id}:cluster/{settings.eks_cluster_name}"
        ),
        when=_cluster("eks"),
    ),
    AwsCall(
        "upgrader.cluster.access.mint_eks_token",
        "get_caller_identity",  # a presigned URL, as `aws eks get-token` makes: signed locally, sent by EKS
        "sts:GetCallerIdentity",
        resource=None,
        when=_cluster("eks"),
        needs_grant=False,  # GetCallerIdentity needs no permission
    ),
)
