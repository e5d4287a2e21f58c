"""Registry credentials from Secrets Manager (IMAGE_REGISTRY_SECRET_ARN): a JSON object of basic credentials
per registry host, `{"registry.example.com": {"username": "...", "password": "..."}}`. Each is named in a 502 by
where it comes from (the secret and the host's key), never by its value. ECR hosts need none: the function's
IAM role asks ECR. A secret that does not exist means no credentials (registries asked anonymously): the
template names one by default. IAM: secretsmanager:GetSecretValue on that secret (upgrader.infra.aws_calls)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from upgrader.images.distribution import RegistryCredentials
from upgrader.images.registry import RegistryUnauthorized, RegistryUnavailable
from upgrader.infra.settings import SettingsError

SETTING = "IMAGE_REGISTRY_SECRET_ARN"


def read_registry_credentials(client: Any, secret_arn: str) -> dict[str, RegistryCredentials]:
    """The credentials per host. RegistryUnauthorized (502) when the secret cannot be read, SettingsError when
    it is not the documented JSON."""
    try:
        text = str(client.get_secret_value(SecretId=secret_arn)["SecretString"])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        if code == "ResourceNotFoundException":  # the template names one by default: none created, none needed
            return {}
        raise RegistryUnauthorized("(every registry)", f"the Secrets Manager secret {secret_arn} ({SETTING})",
                                   f"the secret could not be read: {code}") from exc  # fmt: skip
    except BotoCoreError as exc:
        raise RegistryUnavailable("Secrets Manager", f"reading {SETTING}: {exc}") from exc
    return parse_registry_credentials(text, secret_arn)


def parse_registry_credentials(text: str, secret_arn: str) -> dict[str, RegistryCredentials]:
    problem = f"{SETTING} ({secret_arn}) must hold a JSON object {{host: {{username, password}}}}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{problem}: it is not JSON") from exc
    if not isinstance(data, dict):
        raise SettingsError(problem)
    found: dict[str, RegistryCredentials] = {}
    for host, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("username"), str) \
                or not isinstance(entry.get("password"), str):  # fmt: skip
            raise SettingsError(f"{problem}: the entry of {host!r} has no username and password strings")
        source = f"the Secrets Manager secret {secret_arn} ({SETTING}), key {host}"
        found[str(host)] = RegistryCredentials(entry["username"], entry["password"], source)
    return found
