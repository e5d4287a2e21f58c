"""HTTP client of the upgrade API: the local stack (plain HTTP) or API Gateway in AWS (SigV4).

Requests go through the standard library (urllib). When signing is on, botocore's SigV4Auth signs
each request for the service `execute-api` with credentials from the standard chain (environment,
~/.aws/credentials and config profiles, SSO, container and instance roles).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_API_URL = "http://localhost:3100"
USER_AGENT = "upgrade-customers/0.1"
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class ApiClientError(Exception):
    """Base of what the CLI reports to the operator."""


class ApiUnreachable(ApiClientError):
    """No HTTP answer at all: connection refused, DNS failure, timeout."""


class ApiError(ApiClientError):
    """The API answered with an error status; `message` is the server's own message."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body


class SigningError(ApiClientError):
    """SigV4 was asked for but there are no credentials or no region."""


def region_from_url(url: str) -> str | None:
    """The region of an API Gateway default endpoint (https://<id>.execute-api.<region>.amazonaws.com)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    found = _EXECUTE_API_HOST.match(host)
    return found.group(1) if found else None


def should_sign(url: str) -> bool:
    """Sign for AWS endpoints (https, *.amazonaws.com); never for the local stack."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "https" and (parts.hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn"))


@dataclass
class UpgradeApi:
    """One method per route of the API. `sign=None` decides from the URL (see `should_sign`)."""

    base_url: str = DEFAULT_API_URL
    sign: bool | None = None
    region: str | None = None
    profile: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.sign is None:
            self.sign = should_sign(self.base_url)
        self._credentials: Any = None

    # --- routes ----------------------------------------------------------------------------------

    def deploy(self, request: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.request("POST", "/api/upgrades/deploy", body=request, headers=headers)

    def plan(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/api/upgrades/plan", body=request)

    def list_customers(self, **query: Any) -> dict[str, Any]:
        return self.request("GET", "/api/customers", query=query)

    def all_customers(self, **query: Any) -> dict[str, Any]:
        """Every page of the customer list, as one response."""
        page = self.list_customers(**query)
        customers = list(page.get("customers", []))
        while page.get("nextCursor"):
            page = self.list_customers(**{**query, "cursor": page["nextCursor"]})
            customers.extend(page.get("customers", []))
        return {"count": len(customers), "customers": customers, "nextCursor": None}

    def customer(self, customer_id: str, **query: Any) -> dict[str, Any]:
        return self.request("GET", f"/api/customers/{_segment(customer_id)}", query=query)

    def patch_customer(self, customer_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", f"/api/customers/{_segment(customer_id)}", body=changes)

    def start_sync(self) -> dict[str, Any]:
        return self.request("POST", "/api/customers/sync")

    def sync(self, sync_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/customers/sync/{_segment(sync_id)}")

    def fleet(self) -> dict[str, Any]:
        return self.request("GET", "/api/fleet")

    def list_upgrades(self, **query: Any) -> dict[str, Any]:
        return self.request("GET", "/api/upgrades", query=query)

    def status(self, upgrade_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/upgrades/{_segment(upgrade_id)}/status")

    def logs(self, upgrade_id: str, **query: Any) -> dict[str, Any]:
        return self.request("GET", f"/api/upgrades/{_segment(upgrade_id)}/logs", query=query)

    def all_logs(self, upgrade_id: str, **query: Any) -> dict[str, Any]:
        """Every page of the logs, as one response (count = total)."""
        first = self.logs(upgrade_id, **query)
        entries = list(first.get("logs", []))
        next_offset = first.get("nextOffset")
        while next_offset is not None:
            page = self.logs(upgrade_id, **{**query, "offset": next_offset})
            entries.extend(page.get("logs", []))
            next_offset = page.get("nextOffset")
        return {**first, "count": len(entries), "logs": entries, "offset": 0, "nextOffset": None}

    def continue_upgrade(self, upgrade_id: str) -> dict[str, Any]:
        return self.request("POST", f"/api/upgrades/{_segment(upgrade_id)}/continue")

    def rollback(self, upgrade_id: str, customer_id: str, *, force: bool = False) -> dict[str, Any]:
        return self.request("POST", f"/api/upgrades/{_segment(upgrade_id)}/rollback/{_segment(customer_id)}",
                            body={"force": True} if force else None)  # fmt: skip

    def rollback_upgrade(
        self, upgrade_id: str, *, max_concurrency: int | None = None, force: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"maxConcurrency": max_concurrency} if max_concurrency else {}
        if force:
            body["force"] = True
        return self.request("POST", f"/api/upgrades/{_segment(upgrade_id)}/rollback", body=body)

    def rules(self) -> dict[str, Any]:
        return self.request("GET", "/api/compatibility-rules")

    def add_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/api/compatibility-rules", body=rule)

    def delete_rule(self, rule_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/api/compatibility-rules/{_segment(rule_id)}")

    def promotions(self, component: str, version: str) -> dict[str, Any]:
        return self.request("GET", "/api/promotions", query={"component": component, "version": version})

    def promotion_rules(self) -> dict[str, Any]:
        return self.request("GET", "/api/promotion-rules")

    def set_promotion_rule(self, component: str, rule: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", f"/api/promotion-rules/{_segment(component)}", body=rule)

    def delete_promotion_rule(self, component: str) -> dict[str, Any]:
        return self.request("DELETE", f"/api/promotion-rules/{_segment(component)}")

    def promotion_rule_history(self, component: str) -> dict[str, Any]:
        return self.request("GET", f"/api/promotion-rules/{_segment(component)}/history")

    def resume(self, upgrade_id: str, options: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/api/upgrades/{_segment(upgrade_id)}/resume", body=options)

    def abort(self, upgrade_id: str, *, rollback: bool = False, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"rollback": rollback}
        if reason:
            body["reason"] = reason
        return self.request("POST", f"/api/upgrades/{_segment(upgrade_id)}/abort", body=body)

    # --- transport -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.base_url + path
        clean = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if clean:
            url += "?" + urllib.parse.urlencode(clean)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        if data is not None or method not in ("GET", "HEAD"):  # the local stack refuses writes without it
            headers["Content-Type"] = "application/json"
        if self.sign:
            headers = self._signed_headers(method, url, data, headers)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ApiUnreachable(f"not an http(s) URL: {self.base_url}")
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http(s) only
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return _decode(response.read(), response.status)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload: Any = json.loads(raw) if raw else None
            except ValueError:
                payload = raw.decode("utf-8", "replace")
            raise ApiError(exc.code, _error_message(payload, exc.reason), payload) from None
        except urllib.error.URLError as exc:
            raise ApiUnreachable(f"cannot reach the upgrade API at {self.base_url}: {exc.reason}") from None
        except TimeoutError as exc:
            raise ApiUnreachable(
                f"the upgrade API at {self.base_url} did not answer within {self.timeout:g} s"
            ) from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            raise ApiUnreachable(f"connection to the upgrade API at {self.base_url} failed: {exc}") from exc

    def _signed_headers(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        region = (
            self.region or region_from_url(url) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        if not region:
            raise SigningError("SigV4 needs a region: pass --region or set AWS_REGION")
        credentials = self._resolve_credentials()
        aws_request = AWSRequest(method=method, url=url, data=data or b"", headers=dict(headers))
        SigV4Auth(credentials, "execute-api", region).add_auth(aws_request)
        return dict(aws_request.headers.items())

    def _resolve_credentials(self) -> Any:
        if self._credentials is None:
            import botocore.session
            from botocore.exceptions import BotoCoreError

            try:
                session = botocore.session.Session(profile=self.profile)
                credentials = session.get_credentials()
            except BotoCoreError as exc:
                raise SigningError(f"cannot load AWS credentials: {exc}") from exc
            if credentials is None:
                raise SigningError(
                    "no AWS credentials found (environment, ~/.aws, SSO, instance role); "
                    "run `aws sso login` or set AWS_PROFILE"
                )
            self._credentials = credentials.get_frozen_credentials()
        return self._credentials


def _segment(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode(raw: bytes, status: int) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise ApiError(status, f"the API answered with something that is not JSON: {raw[:200]!r}") from exc
    return payload if isinstance(payload, dict) else {"data": payload}


def _error_message(payload: Any, reason: str) -> str:
    if isinstance(payload, dict):
        message = payload.get("message") or payload.get("Message") or payload.get("error")
        if message:
            return str(message)
    if isinstance(payload, str) and payload.strip():
        return payload.strip()[:500]
    return reason or "error"
