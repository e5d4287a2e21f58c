"""Rings and promotion (issue 21) on a REAL control plane: rings discovered from the real namespaces' `ring` labels,
the promotion gate refusing production before staging ran, then the staging and production deploys through the
real state machine and the real helm (3.17.2 and 4.1.4) run as upgrade-runner; the releases read back with the
real `helm get values`. The same scenario on the simulated cluster: tests/local/test_stack_rings.py."""

from __future__ import annotations

import pytest

from tests.realcluster.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPONENT, VERSION, BEFORE = "api", "v1.2.0", "v1.1.0"


def done(status: dict) -> bool:
    return status["status"] in ("completed", "halted", "failed", "aborted", "completed_with_failures")


def label_ring(stack: Stack, namespace: str, ring: str) -> None:
    """`kubectl label namespace <ns> ring=<ring>`, as a platform team marks its staging customers."""
    stack.cluster.request("PATCH", f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": {"ring": ring}}},
                          content_type="application/merge-patch+json")  # fmt: skip


def api_tags(stack: Stack, namespaces: list[str]) -> list[str]:
    """The api image tag each release holds, read with the real helm."""
    return [stack.values(ns, ns)["api"]["image"]["tag"] for ns in namespaces]


def test_production_waits_for_staging_then_both_run_for_real(stack: Stack, customers) -> None:
    """Breakages tried: the gate's refusal skipped (`PromotionGate.check` never raising NotPromoted): the first
    production deploy was answered 202 and this test failed there; the namespaces labelled `tier=…` instead of
    `ring=…`: every customer fell in production and this test failed at the fleet's rings."""
    # Given one customer namespace labelled ring=staging and two labelled ring=production, found by a sync
    fleet = customers(3)
    staging, production = [fleet[0]], fleet[1:]
    for _, namespace in staging:
        label_ring(stack, namespace, "staging")
    for _, namespace in production:
        label_ring(stack, namespace, "production")
    stack.sync()
    assert stack.ok("GET", "/api/fleet")["byRing"] == {"staging": 1, "internal": 0, "early": 0, "production": 2}
    rings = {c["customerId"]: c["ring"] for c in stack.ok("GET", "/api/customers?limit=500")["customers"]}
    assert rings == {cid: "staging" for cid, _ in staging} | {cid: "production" for cid, _ in production}
    # and a promotion rule for api: every targeted customer of the ring before succeeded, no bake
    stack.ok("PUT", f"/api/promotion-rules/{COMPONENT}", {"minSuccessPercent": 100, "minBakeSeconds": 0})

    # When production is deployed before staging ran
    body = {"component": COMPONENT, "version": VERSION, "strategy": "all"}
    code, refused = stack.call("POST", "/api/upgrades/deploy", {**body, "rings": ["production"]})
    # Then it is refused with the evidence, nothing written and no helm run in the cluster
    assert code == 422, refused
    assert refused["error"] == "NotPromoted"
    promotion = refused["promotion"]
    assert (promotion["ring"], promotion["previousRing"], promotion["allowed"]) == ("production", "staging", False)
    assert [m["reason"] for m in promotion["missing"]] == ["never_ran"]
    assert stack.ok("GET", f"/api/upgrades?component={COMPONENT}")["upgrades"] == []
    assert all(len(stack.history(ns, ns)) == 1 for _, ns in fleet)

    # When staging is deployed: the real state machine, a helm Job per customer run by the real helm
    first = stack.deploy(**body, rings=["staging"])
    final = stack.wait_status(first, done)
    assert (final["status"], final["completed"], final["failed"], final["total"]) == ("completed", 1, 0, 1), final
    # Then staging's release holds the new version and production's do not
    assert api_tags(stack, [ns for _, ns in staging]) == [VERSION]
    assert api_tags(stack, [ns for _, ns in production]) == [BEFORE, BEFORE]
    assert [h["status"] for h in stack.history(staging[0][1], staging[0][1])] == ["superseded", "deployed"]

    # When production is deployed now: allowed, on the evidence of staging's upgrade
    path = stack.ok("GET", f"/api/promotions?component={COMPONENT}&version={VERSION}")
    assert path["nextRing"] == "production"
    second = stack.deploy(**body, rings=["production"])
    final = stack.wait_status(second, done)
    assert (final["status"], final["completed"], final["failed"], final["total"]) == ("completed", 2, 0, 2), final
    # Then every release holds it, by the real helm, and the other component's value is kept
    assert api_tags(stack, [ns for _, ns in fleet]) == [VERSION] * 3
    assert all(stack.values(ns, ns)["dashboard"]["image"]["tag"] == "v1.9.0" for _, ns in fleet)
    assert sorted(log["customer_id"] for log in stack.logs(second)) == sorted(cid for cid, _ in production)
    path = stack.ok("GET", f"/api/promotions?component={COMPONENT}&version={VERSION}")
    carried = {r["ring"]: [u["upgradeId"] for u in (r["evidence"] or {}).get("upgrades", [])] for r in path["rings"]}
    assert (carried["staging"], carried["production"]) == ([first], [second])
