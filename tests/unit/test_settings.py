"""Settings.from_env: environment read once into a validated model, with clear errors."""

from __future__ import annotations

import pytest
from upgrader.infra.settings import Settings, SettingsError


def test_defaults_from_an_empty_environment():
    settings = Settings.from_env({})
    assert settings.cluster_mode == "url"
    assert settings.job_poll_seconds == 15
    assert settings.default_max_concurrency == 10
    assert settings.job_namespace == "upgrade-system"
    assert settings.chart_refs == {}
    assert settings.database_url is None


def test_values_are_read_from_upper_case_variables():
    settings = Settings.from_env({
        "DATABASE_URL": "postgresql://u@h/db", "JOB_POLL_SECONDS": "0", "MANIFEST_BUCKET": "b",
        "CHART_REFS": '{"api": "oci://r/charts/api"}', "DEFAULT_MAX_CONCURRENCY": "25",
    })  # fmt: skip
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.job_poll_seconds == 0
    assert settings.manifest_bucket == "b"
    assert settings.chart_refs == {"api": "oci://r/charts/api"}
    assert settings.default_max_concurrency == 25


def test_empty_variables_count_as_unset():
    settings = Settings.from_env({"JOB_POLL_SECONDS": "", "CHART_REFS": "", "MANIFEST_BUCKET": ""})
    assert (settings.job_poll_seconds, settings.chart_refs, settings.manifest_bucket) == (15, {}, None)


def test_region_falls_back_to_aws_default_region():
    assert Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"
    both = Settings.from_env({"AWS_REGION": "us-east-2", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert both.aws_region == "us-east-2"


def test_unrelated_variables_are_ignored():
    assert Settings.from_env({"PATH": "/bin", "HOME": "/root"}) == Settings()


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("JOB_POLL_SECONDS", "soon", "job_poll_seconds"),
        ("JOB_POLL_SECONDS", "-1", "job_poll_seconds"),
        ("DEFAULT_MAX_CONCURRENCY", "0", "default_max_concurrency"),
        ("APPROVAL_TIMEOUT_SECONDS", "5", "approval_timeout_seconds"),
        ("CLUSTER_MODE", "minikube", "cluster_mode"),
        ("CHART_REFS", "{not json", "chart_refs"),
        ("CHART_REFS", '["a list"]', "chart_refs"),
    ],
)
def test_invalid_values_fail_with_a_settings_error_naming_the_setting_and_value(variable, value, field):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith("invalid configuration in the environment")
    assert field in message.lower()


def test_invalid_value_error_names_the_environment_variable():
    with pytest.raises(SettingsError, match="JOB_POLL_SECONDS"):
        Settings.from_env({"JOB_POLL_SECONDS": "soon"})


def test_require_lists_every_missing_variable_by_its_environment_name():
    settings = Settings.from_env({"MANIFEST_BUCKET": "b"})
    with pytest.raises(SettingsError, match=r"missing environment variable\(s\): UPGRADE_STATE_MACHINE_ARN, "
                                            r"KUBE_API_URL"):  # fmt: skip
        settings.require("upgrade_state_machine_arn", "manifest_bucket", "kube_api_url")


def test_require_passes_when_everything_is_set():
    Settings.from_env({"MANIFEST_BUCKET": "b"}).require("manifest_bucket")


def test_settings_are_frozen():
    settings = Settings.from_env({})
    with pytest.raises(Exception):  # noqa: B017,PT011 - pydantic's frozen-instance error
        settings.job_poll_seconds = 1  # type: ignore[misc]
