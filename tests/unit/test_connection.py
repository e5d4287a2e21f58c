"""How the functions reach PostgreSQL: RDS Proxy with an IAM token and verified TLS, a secret, or a URL.

No AWS: botocore signs the IAM token offline with fake credentials.
"""

from __future__ import annotations

import datetime
import ssl
import warnings
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from psycopg.conninfo import conninfo_to_dict
from upgrader.infra import connection
from upgrader.infra.connection import (
    RDS_CA_BUNDLE,
    conninfo_from_secret,
    database_access,
    iam_auth_token,
    proxy_conninfo,
    resolve_conninfo,
    uses_startup_options,
)
from upgrader.infra.settings import Settings, SettingsError

PROXY_HOST = "stack-db.proxy-c0ffee123456.eu-west-1.rds.amazonaws.com"
PROXY_ENV = {
    "DB_PROXY_ENDPOINT": PROXY_HOST,
    "DB_USER": "upgrader",
    "DB_NAME": "upgrades",
    "AWS_REGION": "eu-west-1",
}


def fake_session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="AKIAEXAMPLEEXAMPLE01",
        aws_secret_access_key="example-secret-access-key",  # noqa: S106 - fake, signs nothing real
        region_name="eu-west-1",
    )


def test_the_iam_token_is_a_signed_connect_request_for_the_proxy_user() -> None:
    token = iam_auth_token(Settings.from_env(PROXY_ENV), session=fake_session())

    url = urlsplit(f"https://{token}")
    query = parse_qs(url.query)
    assert (url.hostname, url.port) == (PROXY_HOST, 5432)
    assert query["Action"] == ["connect"] and query["DBUser"] == ["upgrader"]
    assert query["X-Amz-Signature"][0] and "eu-west-1/rds-db/aws4_request" in query["X-Amz-Credential"][0]


def test_proxy_connection_uses_the_token_as_password_and_verifies_tls_against_the_bundle() -> None:
    settings = Settings.from_env(PROXY_ENV)
    token = iam_auth_token(settings, session=fake_session())

    info = conninfo_to_dict(proxy_conninfo(settings, token))

    assert info["password"] == token
    assert (info["host"], info["port"], info["user"], info["dbname"]) == (PROXY_HOST, "5432", "upgrader", "upgrades")
    assert info["sslmode"] == "verify-full"
    assert info["sslrootcert"] == str(RDS_CA_BUNDLE) and RDS_CA_BUNDLE.is_file()


def test_proxy_mode_signs_a_token_and_never_reads_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given both a proxy and a secret configured, and credentials that only sign locally
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE01", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(connection, "read_database_secret", lambda _: pytest.fail("read the secret"))
    settings = Settings.from_env({**PROXY_ENV, "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:db"})

    # When the connection string is resolved
    info: dict[str, Any] = conninfo_to_dict(resolve_conninfo(settings))

    # Then it carries a freshly signed token, and the session settings go as statements
    assert "X-Amz-Signature=" in info["password"] and info["sslmode"] == "verify-full"
    assert database_access(settings) == "proxy" and not uses_startup_options(settings)


def test_local_runs_keep_database_url_and_startup_options() -> None:
    settings = Settings.from_env({**PROXY_ENV, "DATABASE_URL": "postgresql://me@127.0.0.1/upgrades"})

    assert resolve_conninfo(settings) == "postgresql://me@127.0.0.1/upgrades"
    assert uses_startup_options(settings)


def test_without_any_database_setting_the_error_names_the_variables() -> None:
    with pytest.raises(SettingsError, match="DB_PROXY_ENDPOINT or DB_SECRET_ARN .* DATABASE_URL"):
        database_access(Settings.from_env({}))


def test_proxy_mode_without_user_or_database_name_fails_clearly() -> None:
    settings = Settings.from_env({"DB_PROXY_ENDPOINT": PROXY_HOST})
    with pytest.raises(SettingsError, match="DB_USER, DB_NAME"):
        proxy_conninfo(settings, "token")


@pytest.mark.parametrize(
    ("host", "sslmode", "rootcert"),
    [
        ("db.cluster-c0ffee.eu-west-1.rds.amazonaws.com", "verify-full", str(RDS_CA_BUNDLE)),
        ("postgres.internal.example", "require", None),
    ],
)
def test_secret_connections_verify_rds_hosts_against_the_bundle(host: str, sslmode: str, rootcert: str | None) -> None:
    secret = {"host": host, "port": 5432, "username": "upgrader", "password": "pw", "dbname": "upgrades"}

    info = conninfo_from_secret(secret)

    assert conninfo_to_dict(info).get("sslmode") == sslmode
    assert conninfo_to_dict(info).get("sslrootcert") == rootcert


# -- the bundled certificate authorities -------------------------------------------------------------------
def bundled() -> list[x509.Certificate]:
    with warnings.catch_warnings():
        # The Starfield Services root (RDS Proxy's chain) has serial 0, which cryptography frowns upon.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_pem_x509_certificates(RDS_CA_BUNDLE.read_bytes())


def test_the_bundle_holds_only_certificate_authorities() -> None:
    certificates = bundled()
    assert certificates
    for certificate in certificates:
        assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_the_bundle_covers_aurora_endpoints_and_rds_proxy_endpoints() -> None:
    now = datetime.datetime.now(datetime.UTC)
    current = {c.subject.rfc4514_string() for c in bundled() if c.not_valid_before_utc <= now < c.not_valid_after_utc}

    assert any("CN=Amazon RDS eu-west-1 Root CA RSA2048 G1" in s for s in current)  # Aurora, RDS
    assert any("CN=Amazon Root CA 1," in s for s in current)  # RDS Proxy (Amazon Trust Services)


def test_openssl_loads_every_certificate_of_the_bundle() -> None:
    # libpq reads sslrootcert with OpenSSL, as the ssl module does; comment lines must not hide any.
    context = ssl.create_default_context(cafile=str(RDS_CA_BUNDLE))
    assert len(context.get_ca_certs()) == len(bundled())
