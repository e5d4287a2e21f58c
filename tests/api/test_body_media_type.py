"""A request body is JSON only when it says so: a body without Content-Type is refused (415), not parsed.

A browser sends a body without Content-Type when a page posts a Blob or an ArrayBuffer to another
origin (`fetch(url, {method: "POST", mode: "no-cors", body: new Blob([...])})`): a "simple" request,
sent without a CORS preflight. Parsed as JSON, it deployed a version from another web page.
"""

from __future__ import annotations

import pytest

from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke

# (function, event) of every route that takes a body, each with a body its handler would accept
ROUTES_WITH_A_BODY = [
    ("api_deploy", "api_deploy"),
    ("api_upgrades", "api_upgrades_plan"),
    ("api_control", "api_control_abort"),
    ("api_control", "api_control_rollback_upgrade"),
    ("api_customers", "api_customers_patch"),
    ("api_customers", "api_customers_rules_create"),
]


@pytest.mark.parametrize(("function", "name"), ROUTES_WITH_A_BODY)
def test_a_body_without_content_type_is_refused_and_changes_nothing(
    function: str, name: str, make_customers, fake_workflow, database_url
) -> None:
    """Breakage tried: `_get_body` parsing a body whose Content-Type is missing (main's
    `if content_type and not ...`): deploy answered 202 and wrote an upgrade; this test failed."""
    make_customers(3)
    event = api_event(name)
    assert event["body"], f"events/{name}.json has a body"
    event["headers"] = {k: v for k, v in event["headers"].items() if k.lower() != "content-type"}
    event["multiValueHeaders"] = {
        k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"
    }
    before = snapshot(database_url)

    response = invoke(function, event)

    assert response["statusCode"] == 415, response["body"]
    answer = body(response)
    assert answer["message"] == "unsupported media type: send application/json, not no Content-Type"
    assert answer["errors"][0]["field"] == "body"
    assert snapshot(database_url) == before
    assert fake_workflow.started == []


def test_the_same_body_with_its_content_type_gets_through(make_customers, fake_workflow) -> None:
    """The refusal above is the header's doing: the sample deploy with its Content-Type starts."""
    make_customers(3)
    response = invoke("api_deploy", api_event("api_deploy"))
    assert response["statusCode"] == 202, response["body"]
