"""The console's signer: the operator's AWS credentials (the standard chain or a profile) and the API's region,
signing each forwarded request with SigV4 for `execute-api`; and who the console acts as."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from upgradectl.client import region_from_url, should_sign

LOGGER = logging.getLogger(__name__)


class ConsoleSetupError(Exception):
    """No credentials or no region for signing."""


@dataclass
class Signer:
    """Signs requests for `execute-api` with credentials refreshed as botocore refreshes them (SSO, roles)."""

    region: str
    credentials: Any  # botocore.credentials.Credentials (refreshable)

    def headers(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(self.credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())

    @property
    def access_key(self) -> str:
        return str(self.credentials.get_frozen_credentials().access_key)


def make_signer(api_url: str, *, region: str | None, profile: str | None) -> Signer:
    """The operator's credentials (standard chain or `profile`) and the API's region."""
    import os

    import botocore.session
    from botocore.exceptions import BotoCoreError

    region = region or region_from_url(api_url) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConsoleSetupError("SigV4 needs a region: pass --region or set AWS_REGION")
    try:
        credentials = botocore.session.Session(profile=profile).get_credentials()
    except BotoCoreError as exc:
        raise ConsoleSetupError(f"cannot load AWS credentials: {exc}") from exc
    if credentials is None:
        raise ConsoleSetupError(
            "no AWS credentials found (environment, ~/.aws, SSO, instance role); run `aws sso login` or set AWS_PROFILE"
        )
    return Signer(region=region, credentials=credentials)


def caller_identity(signer: Signer, api_url: str) -> str:
    """Who the console acts as: the caller's ARN from STS for the API in AWS, else the access key id."""
    if should_sign(api_url):
        try:
            import boto3

            frozen = signer.credentials.get_frozen_credentials()
            sts = boto3.client(
                "sts",
                region_name=signer.region,
                aws_access_key_id=frozen.access_key,
                aws_secret_access_key=frozen.secret_key,
                aws_session_token=frozen.token,
            )
            return str(sts.get_caller_identity()["Arn"])
        except Exception:  # noqa: BLE001 - only a label: the API still identifies the caller by the signature
            LOGGER.debug("sts get-caller-identity failed", exc_info=True)
    return f"AWS access key {signer.access_key}"
