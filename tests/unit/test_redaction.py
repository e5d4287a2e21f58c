"""upgrader.infra.redaction: what is replaced by [redacted] in stored or sent text (issue 29 item 4), and what
is left alone (helm's own lines, Kubernetes' errors)."""

from __future__ import annotations

import base64

import pytest
from upgrader.cluster.release import parse_release
from upgrader.infra.redaction import REDACTED, Redactor, redact, secret_values_of

PAIRS = [
    ("password: hunter22", f"password: {REDACTED}"),
    ("DB_PASSWORD=hunter22 next", f"DB_PASSWORD={REDACTED} next"),
    ('{"apiKey": "abc123def", "user": "bob"}', f'{{"apiKey": "{REDACTED}", "user": "bob"}}'),
    ("client_secret='xyz-987'", f"client_secret='{REDACTED}'"),
    ("auth.token = t0k3n, other", f"auth.token = {REDACTED}, other"),
    ("private_key: -----BEGIN", f"private_key: {REDACTED}"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y", f"Authorization: Bearer {REDACTED}"),
    ("clone https://ci:gh_pat_123@github.example.com/x.git", f"clone https://ci:{REDACTED}@github.example.com/x.git"),
    ("redis://:pw0rd@cache:6379", "redis://:pw0rd@cache:6379"),  # no user: handled by known values, not here
]


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=[p[0][:20] for p in PAIRS])
def test_credential_patterns_are_redacted(text: str, expected: str) -> None:
    """Breakage tried: _PAIR without the quoted branch (the JSON case keeps its value), _URL_CREDENTIALS
    removed (the clone URL keeps its password), _BEARER removed (the bearer token stays)."""
    assert redact(text) == expected


HELM_LINES = [
    'Release "customer-0001" has been upgraded. Happy Helming!',
    "NAME: customer-0001\nLAST DEPLOYED: Mon Jan  5 10:00:00 2026\nNAMESPACE: customer-0001\nSTATUS: deployed",
    "Error: UPGRADE FAILED: query: failed to query with labels: secrets is forbidden: User "
    '"system:serviceaccount:upgrade-system:upgrade-runner" cannot list resource "secrets" in API group ""',
    'Error: UPGRADE FAILED: create: failed to create: secrets "sh.helm.release.v1.stack.v2" is forbidden',
    "helm upgrade stack oci://r/charts/stack --set-string api.image.tag=v1.2.0 --wait --atomic",
]


@pytest.mark.parametrize("text", HELM_LINES, ids=range(len(HELM_LINES)))
def test_helms_own_lines_and_rbac_errors_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_known_secret_values_and_their_base64_forms_are_redacted_anywhere() -> None:
    """Breakage tried: Redactor ignoring its `secrets` (as a redactor of patterns only): NOTES prose that
    prints the password, and its base64 form, stay."""
    secret = "c0rrect-horse"  # noqa: S105 - a test's fake credential
    encoded = base64.b64encode(secret.encode()).decode()
    redactor = Redactor({secret, "ok"})  # shorter than MIN_SECRET_LENGTH: not searched for
    text = f"Your admin password is {secret}.\nOr decode {encoded}\nok"
    assert redactor.text(text) == f"Your admin password is {REDACTED}.\nOr decode {REDACTED}\nok"


def test_redacting_twice_changes_nothing_and_json_values_are_walked() -> None:
    once = Redactor({"hunter22"}).value({"error": "token=abc123 for hunter22", "n": 3, "l": ["pwd: x1"]})
    assert once == {"error": f"token={REDACTED} for {REDACTED}", "n": 3, "l": [f"pwd: {REDACTED}"]}
    assert Redactor({"hunter22"}).value(once) == once


def test_a_releases_secret_values_are_its_secrets_data_and_its_secret_like_values() -> None:
    """Breakage tried: secret_values_of without the manifest part (the Secret's data and stringData are not
    found), and without the values part (auth.password is not found)."""
    manifest = "\n".join([
        "---", "apiVersion: v1", "kind: Service", "metadata: {name: stack-api}",
        "---", "apiVersion: v1", "kind: Secret", "metadata: {name: stack-db}", "data:",
        f"  password: {base64.b64encode(b'from-data-77').decode()}", "stringData:", "  url: postgres://u:from-string@db",
    ])  # fmt: skip
    record = {"name": "stack", "version": 3, "manifest": manifest,
              "config": {"api": {"image": {"tag": "v1.2.0"}}, "auth": {"password": "from-values", "user": "admin"},
                         "replicas": 2, "apiKey": "k-12345"}}  # fmt: skip

    found = secret_values_of(record)

    assert found == {"from-data-77", "postgres://u:from-string@db", "from-values", "admin", "k-12345"}
    assert parse_release(record).secret_values() == found
    assert "v1.2.0" not in found and "2" not in found


def test_an_unparsable_manifest_yields_no_values_and_no_error() -> None:
    assert secret_values_of({"manifest": "kind: Secret\n  : : [", "config": None}) == frozenset()
