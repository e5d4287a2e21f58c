"""The customers API against the real PostgreSQL: filters, cursor pages, reading one customer, PATCH
(validated, audited, nothing half-written), the fleet's spread and syncs on demand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import call, deploy
from tests.conftest import body
from tests.support.database import snapshot
from tests.support.events import api_event
from tests.support.functions import invoke

JANE = "arn:aws:sts::123456789012:assumed-role/PlatformOperator/jane"
SOON = (datetime.now(UTC) + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%SZ")


def customers(**query: str) -> tuple[int, Any]:
    return call("api_customers", "api_customers_list", "/api/customers", {}, query)


def customer(customer_id: str, **query: str) -> tuple[int, Any]:
    path = f"/api/customers/{customer_id}"
    return call("api_customers", "api_customers_get", path, {"customerId": customer_id}, query)


def patch(customer_id: str, payload: Any, who: str = JANE) -> tuple[int, Any]:
    event = api_event("api_customers_patch", path=f"/api/customers/{customer_id}",
                      path_params={"customerId": customer_id}, body=payload, user_arn=who)  # fmt: skip
    response = invoke("api_customers", event)
    return response["statusCode"], body(response)


def ids(page: Any) -> list[str]:
    return [c["customerId"] for c in page["customers"]]


@pytest.fixture
def fleet(make_customers, sql) -> None:
    make_customers(3, labels={"tier": "gold"})  # cust_0001..3, api v1.1.0
    make_customers(2, start=4, versions={"api": "v1.0.3", "dashboard": "v1.9.0"}, labels={"tier": "silver"})
    make_customers(1, start=6, status="suspended", labels={"tier": "gold"})
    make_customers(1, start=7, status="decommissioned")
    sql(
        'UPDATE customers SET drift = \'{"api": {"recorded": "v1.0.0", "release": "v1.1.0"}}\' WHERE id = \'cust_0002\''
    )


# --------------------------------------------------------------------------------------------- filters
def test_filters_component_version_label_status_drift(fleet):
    assert ids(customers(component="api", version="v1.0.3")[1]) == ["cust_0004", "cust_0005"]
    assert ids(customers(label="tier=gold")[1]) == ["cust_0001", "cust_0002", "cust_0003", "cust_0006"]
    assert ids(customers(label="tier=gold", status="active")[1]) == ["cust_0001", "cust_0002", "cust_0003"]
    assert ids(customers(status="decommissioned")[1]) == ["cust_0007"]
    assert ids(customers(drift="true")[1]) == ["cust_0002"]
    assert len(ids(customers(drift="false")[1])) == 6
    assert ids(customers(component="api", version="v9")[1]) == []


def test_component_or_version_alone(fleet):
    assert ids(customers(version="v1.0.3")[1]) == ["cust_0004", "cust_0005"]
    assert len(ids(customers(component="dashboard")[1])) == 7  # everyone with a known dashboard version
    assert ids(customers(component="exporter")[1]) == []


def test_cursor_pages_cover_every_customer_once(fleet):
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        code, page = customers(limit="3", **({"cursor": cursor} if cursor else {}))
        assert code == 200 and page["count"] <= 3
        seen += ids(page)
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [f"cust_{n:04d}" for n in range(1, 8)] and pages == 3


def test_one_customer_with_every_operation_across_upgrades(fleet, fake_workflow, sql):
    first = deploy(component="api", version="v1.2.0", customerIds=["cust_0001"])["upgradeId"]
    sql("UPDATE system_upgrades SET status = 'completed'")
    second = deploy(component="dashboard", version="v2.0.0", customerIds=["cust_0001"])["upgradeId"]
    code, found = customer("cust_0001")
    assert code == 200
    assert found["versions"] == {"api": "v1.1.0", "dashboard": "v1.9.0"} and found["labels"] == {"tier": "gold"}
    assert [(o["upgradeId"], o["component"], o["toVersion"]) for o in found["operations"]] == [
        (second, "dashboard", "v2.0.0"), (first, "api", "v1.2.0")
    ]  # fmt: skip
    assert found["operationsTotal"] == 2
    code, missing = customer("cust_9999")
    assert (code, missing["error"]) == (404, "CustomerNotFound")


# ----------------------------------------------------------------------------------------------- PATCH
def test_patch_is_applied_and_audited_with_who_and_when(fleet, sql):
    window = {"timezone": "Europe/Berlin", "days": ["sat", "sun"], "start": "02:00", "durationMinutes": 120}
    code, changed = patch("cust_0001", {
        "labels": {"tier": "platinum", "region": "eu-west-1"},
        "maintenanceWindow": window,
        "pins": {"api": {"reason": "customer sign-off pending", "expiresAt": SOON}},
    })  # fmt: skip
    assert code == 200, changed
    assert changed["customer"]["labels"] == {"tier": "platinum", "region": "eu-west-1"}
    assert changed["customer"]["maintenanceWindow"] == window
    pin = changed["customer"]["pins"]["api"]
    assert (pin["version"], pin["pinnedBy"], pin["expired"]) == ("v1.1.0", JANE, False)  # the version it runs
    assert changed["changedBy"] == JANE and changed["changedAt"]
    assert set(changed["changes"]) == {"labels", "maintenanceWindow", "pins.api"}
    # the audit: who, when, and each field before and after
    (event,) = sql("SELECT kind, detail, actor, created_at FROM customer_events WHERE customer_id = 'cust_0001'")
    assert (event["kind"], event["actor"]) == ("updated", JANE) and event["created_at"]
    assert event["detail"]["labels"] == {
        "before": {"tier": "gold"},
        "after": {"tier": "platinum", "region": "eu-west-1"},
    }
    _, shown = customer("cust_0001")
    assert shown["history"][0]["actor"] == JANE and shown["updatedBy"] == JANE


def test_patch_removes_labels_pins_and_windows_with_null(fleet, sql):
    patch("cust_0001", {"labels": {"region": "eu"}, "pins": {"api": {"reason": "x", "expiresAt": SOON}},
                        "maintenanceWindow": {"timezone": "UTC", "days": ["mon"], "start": "00:00",
                                              "durationMinutes": 60}})  # fmt: skip
    code, changed = patch("cust_0001", {"labels": {"region": None}, "pins": {"api": None}, "maintenanceWindow": None})
    assert code == 200
    customer_after = changed["customer"]
    assert (customer_after["labels"], customer_after["pins"], customer_after["maintenanceWindow"]) == (
        {"tier": "gold"}, {}, None
    )  # fmt: skip


def test_a_patch_that_changes_nothing_records_nothing(fleet, sql):
    code, same = patch("cust_0001", {"labels": {"tier": "gold"}, "status": "active"})
    assert (code, same["changes"], same["changedBy"]) == (200, {}, None)
    assert sql("SELECT count(*) AS n FROM customer_events")[0]["n"] == 0


def test_status_suspended_and_back_and_drift_acknowledged(fleet):
    assert patch("cust_0001", {"status": "suspended"})[1]["customer"]["status"] == "suspended"
    assert patch("cust_0001", {"status": "active"})[1]["customer"]["status"] == "active"
    code, acked = patch("cust_0002", {"acknowledgeDrift": True})
    assert code == 200 and acked["customer"]["drift"] is None
    assert acked["changes"]["drift"]["before"]["api"] == {"recorded": "v1.0.0", "release": "v1.1.0"}


@pytest.mark.parametrize(
    ("customer_id", "payload", "status", "named"),
    [
        ("cust_0007", {"status": "active"}, 409, "decommissioned"),
        ("cust_0001", {"pins": {"exporter": {"reason": "x", "expiresAt": SOON}}}, 422, "pins.exporter.version"),
        ("cust_9999", {"labels": {"tier": "gold"}}, 404, "cust_9999"),
    ],
)
def test_a_refused_patch_writes_nothing(fleet, database_url, customer_id, payload, status, named):
    # cust_0001 has no exporter version recorded: a pin needs one; the labels of the same patch stay too
    before = snapshot(database_url)
    code, refused = patch(customer_id, {**payload, "labels": {"tier": "changed"}})
    assert code == status and named in refused["message"]
    assert snapshot(database_url) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"maintenanceWindow": {"timezone": "Mars/Olympus", "days": ["sat"], "start": "02:00", "durationMinutes": 60}},
         "maintenanceWindow.timezone"),
        ({"pins": {"api": {"reason": "x", "expiresAt": "2020-01-01T00:00:00Z"}}}, "pins.api.expiresAt"),
        ({"pins": {"api": {"reason": "x", "expiresAt": "2099-01-01T00:00:00Z"}}}, "pins.api.expiresAt"),
        ({"pins": {"api": {"reason": "x", "expiresAt": "2030-13-01T00:00:00Z"}}}, "pins.api.expiresAt"),
    ],
)  # fmt: skip
def test_values_the_world_refuses_are_a_422_naming_the_field_and_nothing_is_written(
    fleet, database_url, payload, field
):
    before = snapshot(database_url)
    code, refused = patch("cust_0001", {**payload, "labels": {"tier": "changed"}})
    assert (code, [e["field"] for e in refused["errors"]]) == (422, [field])
    assert snapshot(database_url) == before
    # an unknown customer is a 404 first, whatever the values
    assert patch("cust_9999", payload)[0] == 404


# ------------------------------------------------------------------------------------- fleet and syncs
def test_the_fleet_counts_versions_of_existing_customers(fleet):
    code, spread = call("api_customers", "api_customers_fleet", "/api/fleet", {})
    assert code == 200
    assert (spread["customers"], spread["byStatus"], spread["drift"]) == (
        6, {"active": 5, "suspended": 1, "decommissioned": 1}, 1
    )  # fmt: skip
    api = next(c for c in spread["components"] if c["component"] == "api")
    assert api["versions"] == [{"version": "v1.1.0", "customers": 4}, {"version": "v1.0.3", "customers": 2}]
    exporter = next(c for c in spread["components"] if c["component"] == "exporter")
    assert (exporter["versions"], exporter["unknown"]) == ([], 6)


def start_sync() -> tuple[int, Any]:
    response = invoke("api_sync", api_event("api_sync"))
    return response["statusCode"], body(response)


def test_a_sync_answers_at_once_and_one_runs_at_a_time(env, fake_launcher, sql):
    code, started = start_sync()
    assert (code, started["status"], started["alreadyRunning"]) == (202, "pending", False)
    assert fake_launcher.launched == [(int(started["syncId"]), JANE)]
    code, again = start_sync()
    assert (code, again["syncId"], again["alreadyRunning"]) == (202, started["syncId"], True)
    assert len(fake_launcher.launched) == 1
    path = f"/api/customers/sync/{started['syncId']}"
    code, read = call("api_customers", "api_customers_sync_status", path, {"syncId": started["syncId"]})
    assert (code, read["status"], read["trigger"]) == (200, "pending", "api")
    code, missing = call("api_customers", "api_customers_sync_status", "/api/customers/sync/99", {"syncId": "99"})
    assert (code, missing["error"]) == (404, "SyncNotFound")


def test_a_sync_that_cannot_be_started_is_a_503_and_not_left_pending(env, fake_launcher, sql):
    fake_launcher.fail = True
    code, refused = start_sync()
    assert (code, refused["error"]) == (503, "SyncUnavailable")
    assert [r["status"] for r in sql("SELECT status FROM inventory_syncs")] == ["failed"]
    fake_launcher.fail = False
    assert start_sync()[1]["alreadyRunning"] is False
