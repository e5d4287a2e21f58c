"""What `sam local invoke --env-vars scripts/sam-local/env.json` needs from template.yaml: SAM sets only the variables
a function declares, and silently ignores the others."""

from __future__ import annotations

import json

import yaml
from upgrader.infra.connection import database_access
from upgrader.infra.settings import Settings

from upgradectl.samlocal.invoke import ENV_FILE, TEMPLATE, _AnyTag


def declared() -> tuple[dict[str, object], dict[str, set[str]]]:
    template = yaml.load(TEMPLATE.read_text(), Loader=_AnyTag)  # noqa: S506 - SafeLoader subclass
    globals_ = template["Globals"]["Function"]["Environment"]["Variables"]
    functions = {
        name: set((r["Properties"].get("Environment") or {}).get("Variables") or {})
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    return globals_, functions


def test_every_variable_of_the_env_file_is_declared_where_it_is_needed():
    """Breakage tried: DATABASE_URL removed from the Globals (this test named it; a `sam local invoke` run then
    answered SettingsError for every function: the env-vars file's database never reached them); JOB_POLL_SECONDS
    added to the env-vars file (declared by no function: named here)."""
    globals_, functions = declared()
    for name in ("DATABASE_URL", "KUBE_TOKEN_FILE", "KUBE_READER_TOKEN_FILE", "AWS_ENDPOINT_URL"):
        assert globals_.get(name) == "", f"{name} is not declared empty in Globals"
    cluster_workers = {
        "SyncCustomersFunction",
        "StartHelmJobFunction",
        "CheckHelmJobFunction",
        "CheckRolloutFunction",
        "ReconcileRunsFunction",
    }
    for name in json.loads(ENV_FILE.read_text())["Parameters"]:
        if name in ("CLUSTER_MODE", "KUBE_API_URL"):
            assert all(name in functions[f] for f in cluster_workers), f"{name} is not declared by every cluster worker"
        else:
            assert name in globals_ or any(name in variables for variables in functions.values()), (
                f"{name} of {ENV_FILE.name} is declared nowhere: --env-vars would ignore it"
            )


def test_the_declared_variables_change_nothing_in_aws_where_they_are_empty():
    """Breakage tried: the settings keeping empty values (a deployed function would read KUBE_TOKEN_FILE "" as the
    path of its token file)."""
    globals_, _ = declared()
    empty = {name: "" for name, value in globals_.items() if value == ""}
    settings = Settings.from_env({**empty, "DB_PROXY_ENDPOINT": "proxy.example", "DB_USER": "u", "DB_NAME": "d"})
    assert settings.database_url is None and settings.kube_token_file is None
    assert database_access(settings) == "proxy"
