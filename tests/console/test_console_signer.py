"""Whose credentials and which region the console signs with, and whom it says it acts as (no stack, no AWS:
the standard credential chain read from the environment, STS replaced by a recording fake)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials

from upgradectl.console import signing
from upgradectl.console.signing import ConsoleSetupError, Signer, caller_identity, make_signer

AWS_URL = "https://abc123.execute-api.eu-west-3.amazonaws.com/prod"
CUSTOM_DOMAIN = "https://upgrades.example.com/prod"  # no region in it


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment whose credential chain finds only what a test sets (no files, no instance role)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def _keys(chain: pytest.MonkeyPatch) -> None:
    chain.setenv("AWS_ACCESS_KEY_ID", "AKIASIGNERTEST000001")
    chain.setenv("AWS_SECRET_ACCESS_KEY", "signer-secret")


@pytest.mark.parametrize(
    ("given", "url", "environment", "expected"),
    [
        ("ap-south-1", AWS_URL, {"AWS_REGION": "us-west-2"}, "ap-south-1"),  # --region wins
        (None, AWS_URL, {"AWS_REGION": "us-west-2"}, "eu-west-3"),  # then the API's own URL
        (None, CUSTOM_DOMAIN, {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "sa-east-1"}, "us-west-2"),
        (None, CUSTOM_DOMAIN, {"AWS_DEFAULT_REGION": "sa-east-1"}, "sa-east-1"),
    ],
)
def test_the_region_is_the_flag_then_the_urls_then_the_environments(
    chain: pytest.MonkeyPatch, given: str | None, url: str, environment: dict[str, str], expected: str
) -> None:
    """mutants: signing.py (was proxy.py):93 `"AWS_REGION"` → `"XXAWS_REGIONXX"`, `"AWS_DEFAULT_REGION"` → `"XXAWS_DEFAULT_REGIONXX"`."""
    _keys(chain)
    for name, value in environment.items():
        chain.setenv(name, value)
    signer = make_signer(url, region=given, profile=None)
    assert signer.region == expected and signer.access_key == "AKIASIGNERTEST000001"


def test_without_a_region_the_console_says_how_to_give_one(chain: pytest.MonkeyPatch) -> None:
    """mutants: signing.py (was proxy.py):95 the message."""
    _keys(chain)
    with pytest.raises(ConsoleSetupError) as refused:
        make_signer(CUSTOM_DOMAIN, region=None, profile=None)
    assert str(refused.value) == "SigV4 needs a region: pass --region or set AWS_REGION"


def test_without_credentials_the_console_says_how_to_get_them(chain: pytest.MonkeyPatch) -> None:
    """mutants: signing.py (was proxy.py):102 the message."""
    with pytest.raises(ConsoleSetupError) as refused:
        make_signer(AWS_URL, region=None, profile=None)
    assert str(refused.value) == (
        "no AWS credentials found (environment, ~/.aws, SSO, instance role); run `aws sso login` or set AWS_PROFILE"
    )


def test_an_unknown_profile_is_a_setup_error_naming_it(chain: pytest.MonkeyPatch) -> None:
    """botocore's ProfileNotFound, not a traceback. mutants: signing.py (was proxy.py):99 the message."""
    with pytest.raises(ConsoleSetupError) as refused:
        make_signer(AWS_URL, region=None, profile="nobody")
    assert str(refused.value) == "cannot load AWS credentials: The config profile (nobody) could not be found"


class FakeSts:
    """boto3.client("sts", ...) as the console calls it: records the arguments, answers an ARN or raises."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.made: list[tuple[str, dict[str, Any]]] = []

    def client(self, service: str, **kwargs: Any) -> FakeSts:
        self.made.append((service, kwargs))
        return self

    def get_caller_identity(self) -> dict[str, str]:
        if self.fail:
            raise RuntimeError("sts is unreachable")
        return {"Arn": "arn:aws:sts::123456789012:assumed-role/Operator/alice", "Account": "123456789012"}


@pytest.fixture
def signer() -> Signer:
    """Made in a fixture, not at import: a Signer that cannot be made fails the tests (pytest's collection error,
    exit code 2, is what mutmut 2 counts as a survivor)."""
    return Signer(region="eu-west-3", credentials=Credentials("AKIASIGNERTEST000001", "signer-secret", "tok-1"))


def test_the_console_names_the_caller_sts_returns_asked_with_the_signers_credentials(
    monkeypatch: pytest.MonkeyPatch, signer: Signer
) -> None:
    """mutants: signing.py (was proxy.py):113-121 (the credentials, the service name, the region, the session token, `"Arn"`)."""
    sts = FakeSts()
    monkeypatch.setattr("boto3.client", sts.client)
    assert caller_identity(signer, AWS_URL) == "arn:aws:sts::123456789012:assumed-role/Operator/alice"
    assert sts.made == [("sts", {"region_name": "eu-west-3", "aws_access_key_id": "AKIASIGNERTEST000001",
                                 "aws_secret_access_key": "signer-secret", "aws_session_token": "tok-1"})]  # fmt: skip


def test_without_sts_the_console_names_the_access_key_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, signer: Signer
) -> None:
    """Only a label (the API identifies the caller by the signature): never an error. mutants: signing.py (was proxy.py):123
    the message, `exc_info=True` → `False`."""
    monkeypatch.setattr("boto3.client", FakeSts(fail=True).client)
    with caplog.at_level(logging.DEBUG, logger=signing.__name__):
        assert caller_identity(signer, AWS_URL) == "AWS access key AKIASIGNERTEST000001"
    (record,) = [r for r in caplog.records if r.name == signing.__name__]
    assert record.getMessage() == "sts get-caller-identity failed"
    assert record.exc_info and record.exc_info[0] is RuntimeError  # the traceback, for --debug


def test_the_local_stack_is_never_asked_for_an_identity(monkeypatch: pytest.MonkeyPatch, signer: Signer) -> None:
    sts = FakeSts()
    monkeypatch.setattr("boto3.client", sts.client)
    assert caller_identity(signer, "http://127.0.0.1:3000/v1") == "AWS access key AKIASIGNERTEST000001"
    assert sts.made == []
