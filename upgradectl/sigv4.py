"""SigV4 for clients generated from docs/openapi.json: an httpx `Auth` built on botocore's signer.

The API requires AWS Signature Version 4 (API Gateway `AWS_IAM`). The document states it as the `sigv4`
security scheme with API Gateway's `x-amazon-apigateway-authtype: awsSigv4`; OpenAPI itself has no SigV4
scheme, so generators see an `Authorization` header and make a client that sends a fixed token. Give that
client this auth instead (openapi-python-client, httpx underneath)::

    from upgradectl.sigv4 import SigV4
    from upgrades_api_client import AuthenticatedClient

    client = AuthenticatedClient(base_url="https://abc123.execute-api.eu-west-1.amazonaws.com/v1",
                                 token="sigv4", httpx_args={"auth": SigV4()})

Each request is signed when it is sent, for the service `execute-api`, with credentials from botocore's
standard chain (environment, ~/.aws profiles, SSO, container and instance roles; refreshed when they
expire) and the region of the API's URL (or `region=`, or AWS_REGION). What is signed: the method, path,
query, body, `Host`, `Content-Type` and `Idempotency-Key` (headers a proxy may rewrite, such as
`Connection` or `Accept-Encoding`, are sent unsigned). The token the generated client puts in
`Authorization` is replaced by the signature.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import httpx

from upgradectl.client import region_from_url

SERVICE = "execute-api"
SIGNED_HEADERS = ("content-type", "idempotency-key")


class SigningError(Exception):
    """No credentials or no region to sign with."""


class SigV4(httpx.Auth):
    """Sign every request of an httpx client (a generated API client's) with SigV4 for `execute-api`."""

    requires_request_body = True  # the body's hash is part of the signature

    def __init__(self, *, region: str | None = None, credentials: Any = None, profile: str | None = None) -> None:
        """`credentials`: botocore Credentials (default: the standard chain, of `profile` if given)."""
        self._region = region
        self._credentials = credentials
        self._profile = profile

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = str(request.url)
        signed = {name: value for name, value in request.headers.items() if name.lower() in SIGNED_HEADERS}
        aws_request = AWSRequest(method=request.method, url=url, data=request.content, headers=signed)
        SigV4Auth(self._frozen_credentials(), SERVICE, self._region_for(url)).add_auth(aws_request)
        for name, value in aws_request.headers.items():
            request.headers[name] = value
        yield request

    def _region_for(self, url: str) -> str:
        region = (
            self._region or region_from_url(url) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        if not region:
            raise SigningError("SigV4 needs a region: pass region= or set AWS_REGION")
        return region

    def _frozen_credentials(self) -> Any:
        if self._credentials is None:
            import botocore.session

            self._credentials = botocore.session.Session(profile=self._profile).get_credentials()
            if self._credentials is None:
                raise SigningError("no AWS credentials found (environment, ~/.aws, SSO, instance role)")
        return self._credentials.get_frozen_credentials()
