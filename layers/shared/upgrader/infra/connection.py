"""How a function reaches PostgreSQL, and the connection string for it.

Three ways, chosen from the settings (`database_access`):
- url: DATABASE_URL, for local runs and tests only;
- proxy: the stack's RDS Proxy (DB_PROXY_ENDPOINT). The password is an IAM authentication token the
  function signs itself (no secret to read; the proxy checks rds-db:connect), and TLS is verified
  against the bundled Amazon RDS / RDS Proxy certificate authorities (sslmode=verify-full);
- secret: an existing database described by a Secrets Manager secret (DB_SECRET_ARN).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from psycopg.conninfo import make_conninfo

from upgrader.infra.settings import Settings, SettingsError

DatabaseAccess = Literal["url", "proxy", "secret"]

# Amazon RDS CAs and the Amazon Trust Services roots of RDS Proxy (scripts/update-rds-ca-bundle.py).
RDS_CA_BUNDLE = Path(__file__).resolve().parent / "certs" / "rds-ca-bundle.pem"
_RDS_HOST_SUFFIXES = (".rds.amazonaws.com", ".rds.amazonaws.com.cn")


def database_access(settings: Settings) -> DatabaseAccess:
    """Which way the settings say to reach the database (the first configured wins)."""
    if settings.database_url:
        return "url"
    if settings.db_proxy_endpoint:
        return "proxy"
    if settings.db_secret_arn:
        return "secret"
    raise SettingsError("set DB_PROXY_ENDPOINT or DB_SECRET_ARN (AWS), or DATABASE_URL (local runs and tests)")


def resolve_conninfo(settings: Settings) -> str:
    """A libpq connection string; in AWS freshly built for each new connection (tokens expire)."""
    access = database_access(settings)
    if access == "url":
        return str(settings.database_url)
    if access == "proxy":
        return proxy_conninfo(settings, iam_auth_token(settings))
    return conninfo_from_secret(read_database_secret(settings))


def proxy_conninfo(settings: Settings, token: str) -> str:
    """Connection string for the RDS Proxy: the IAM token is the password, TLS verified in full."""
    settings.require("db_proxy_endpoint", "db_user", "db_name")
    return make_conninfo(
        host=str(settings.db_proxy_endpoint),
        port=str(settings.db_port),
        user=str(settings.db_user),
        password=token,
        dbname=str(settings.db_name),
        sslmode="verify-full",
        sslrootcert=str(RDS_CA_BUNDLE),
    )


def iam_auth_token(settings: Settings, session: Any | None = None) -> str:
    """An RDS IAM authentication token (valid 15 minutes) for DB_USER at the proxy.

    Signed locally with the function's credentials: no AWS call is made here; the proxy checks the
    signature and the rds-db:connect permission when the connection opens.
    """
    if session is None:
        import boto3  # only in AWS

        session = boto3.session.Session()
    rds = session.client("rds", region_name=settings.aws_region)
    return str(
        rds.generate_db_auth_token(
            DBHostname=settings.db_proxy_endpoint,
            Port=settings.db_port,
            DBUsername=settings.db_user,
            Region=settings.aws_region or rds.meta.region_name,
        )
    )


def read_database_secret(settings: Settings) -> dict[str, Any]:
    """The database secret (host, port, username, password, dbname); never logged or put in the environment."""
    import boto3  # only in AWS

    client = boto3.client("secretsmanager", region_name=settings.aws_region)
    return dict(json.loads(client.get_secret_value(SecretId=settings.db_secret_arn)["SecretString"]))


def conninfo_from_secret(secret: dict[str, Any]) -> str:
    """A libpq connection string from an RDS-style secret. An RDS/Aurora host is verified against the
    bundled CAs; any other host gets TLS without verification (its CA is not known here)."""
    host = str(secret["host"])
    verify = host.endswith(_RDS_HOST_SUFFIXES)
    return make_conninfo(
        host=host,
        port=str(secret.get("port", 5432)),
        user=secret["username"],
        password=secret["password"],
        dbname=secret.get("dbname", "upgrades"),
        sslmode="verify-full" if verify else "require",
        **({"sslrootcert": str(RDS_CA_BUNDLE)} if verify else {}),
    )


def uses_startup_options(settings: Settings) -> bool:
    """RDS Proxy refuses libpq's `options` startup parameter ("RDS Proxy currently doesn't support
    command-line options"): through the proxy, session settings are sent as SET statements instead."""
    return database_access(settings) != "proxy"
