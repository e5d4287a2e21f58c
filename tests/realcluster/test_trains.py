"""Release trains (issue 21 item 3) on a REAL control plane: the compatibility rules refuse api or dashboard alone,
the train moves both in one helm upgrade per customer through the real state machine and the real helm (3.17.2 and
4.1.4) run as upgrade-runner, and a rollback after a later exporter upgrade restores exactly the train's components;
the releases read back with the real `helm get values`. The same on the simulated cluster: tests/e2e/test_trains.py."""

from __future__ import annotations

import pytest

from tests.realcluster.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRAIN = {"api": "v2.0.0", "dashboard": "v2.0.0"}


def done(status: dict) -> bool:
    return status["status"] in ("completed", "halted", "failed", "aborted", "completed_with_failures",
                                "rolled_back", "rollback_incomplete")  # fmt: skip


def tags(stack: Stack, namespace: str) -> dict[str, str]:
    """The image tags the release's user values hold, by the real helm."""
    values = stack.values(namespace, namespace)
    return {c: values[c]["image"]["tag"] for c in ("api", "dashboard", "exporter") if c in values}


def test_a_train_moves_two_components_in_one_helm_upgrade_and_rolls_back_exactly_them(stack: Stack, customers) -> None:
    """Breakage tried: the helm argv without the train's other components (`JobManifests.helm_argv` setting only
    the first): dashboard stayed at v1.9.0 and this test failed at the train's values."""
    fleet = customers(2)
    for rule in ({"component": "api", "versions": ">=2.0", "requires": {"component": "dashboard", "versions": ">=2.0"}},
                 {"component": "dashboard", "versions": ">=2.0", "requires": {"component": "api", "versions": ">=2.0"}}):  # fmt: skip
        stack.ok("POST", "/api/compatibility-rules", rule)
    # Either alone is refused by the rules
    code, refused = stack.call(
        "POST", "/api/upgrades/deploy", {"component": "api", "version": "v2.0.0", "strategy": "all"}
    )
    assert (code, refused["error"]) == (422, "IncompatibleVersions"), refused

    # The train: one upgrade, one helm revision per customer holding both tags
    train = stack.deploy(components=TRAIN, strategy="all")
    final = stack.wait_status(train, done)
    assert (final["status"], final["completed"], final["components"]) == ("completed", 2, TRAIN), final
    for _, namespace in fleet:
        assert tags(stack, namespace) == {"api": "v2.0.0", "dashboard": "v2.0.0"}
        assert [h["status"] for h in stack.history(namespace, namespace)] == ["superseded", "deployed"]
    entry = stack.logs(train)[0]
    assert entry["components"]["dashboard"] == {"from": "v1.9.0", "to": "v2.0.0", "before": "v1.9.0",
                                                "after": "v2.0.0"}  # fmt: skip

    # A later upgrade of exporter alone, then the train is rolled back
    exporter = stack.deploy(component="exporter", version="v1.1.0", strategy="all")
    assert stack.wait_status(exporter, done)["status"] == "completed"
    code, rollback = stack.call("POST", f"/api/upgrades/{train}/rollback")
    assert code == 202, rollback
    final = stack.wait_status(train, lambda s: s["rolledBack"] == 2 or done(s) and s["status"] != "completed")
    assert final["rolledBack"] == 2, final
    for _, namespace in fleet:
        # exactly the train's components are back; exporter's later change is kept
        assert tags(stack, namespace) == {"api": "v1.1.0", "dashboard": "v1.9.0", "exporter": "v1.1.0"}
        assert len(stack.history(namespace, namespace)) == 4
