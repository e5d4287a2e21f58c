"""Rings and promotion on the local stack, as an operator drives them with the CLI over HTTP: the real
handlers, the real state machine, helm Jobs in the simulated cluster (docs/rings.md).

The stack's 20 demo customers are in rings by position: cust_abc123..127 staging, 128..132 internal,
133..142 early (none in production); cust_abc142's helm Jobs always fail."""

from __future__ import annotations

import time

import pytest
from upgrader.infra.vocabulary import ACTIVE_UPGRADE_STATUSES

from tests.local.conftest import StackProcess
from tests.local.test_stack import run_cli
from upgradectl import cli

pytestmark = pytest.mark.e2e


def wait_until_ended(stack: StackProcess, upgrade_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = stack.get(f"/api/upgrades/{upgrade_id}/status")
        if status["status"] not in ACTIVE_UPGRADE_STATUSES:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def test_a_version_is_promoted_ring_by_ring_under_its_rule(local_stack: StackProcess):
    # Given the fleet in rings and a rule for exporter: every targeted customer of the ring before succeeded
    fleet = local_stack.get("/api/fleet")
    assert fleet["byRing"] == {"staging": 5, "internal": 5, "early": 10, "production": 0}
    code, out, err = run_cli(local_stack, "promotion-rules", "set", "exporter", "--min-success", "100")
    assert code == cli.EXIT_OK, err
    assert "100 % succeeded on the ring before" in out

    # When a deploy targets early before the version ran anywhere
    code, out, err = run_cli(local_stack, "--component", "exporter", "--version", "v3.0.0", "--strategy", "all",
                             "--ring", "early")  # fmt: skip
    # Then it is refused with what is missing, and nothing started
    assert code == cli.EXIT_ERROR and "HTTP 422" in err
    assert "not promoted: it never ran on internal" in err
    assert local_stack.get("/api/upgrades?component=exporter")["upgrades"] == []

    # When the operator promotes: staging first (all at once), as the per-ring strategy says
    code, out, err = run_cli(local_stack, "promote", "--component", "exporter", "--version", "v3.0.0",
                             "--ring-strategy", "staging=all", "--ring-strategy", "internal=batch:2")  # fmt: skip
    assert code == cli.EXIT_OK, err
    assert "promoting exporter v3.0.0 to ring staging (all)" in out
    staging = out.split("upgrade id ")[1].split()[0]
    # and promoting again while it runs (or right after) never deploys twice to staging
    done = wait_until_ended(local_stack, staging)
    assert (done["status"], done["completed"], done["total"]) == ("completed", 5, 5)
    logs = local_stack.get(f"/api/upgrades/{staging}/logs")["logs"]
    assert sorted(e["customer_id"] for e in logs) == [f"cust_abc{n}" for n in range(123, 128)]

    # When promoted again: internal, in batches of 2
    code, out, err = run_cli(local_stack, "promote", "--component", "exporter", "--version", "v3.0.0",
                             "--ring-strategy", "staging=all", "--ring-strategy", "internal=batch:2")  # fmt: skip
    assert code == cli.EXIT_OK, err
    assert "to ring internal (batch)" in out
    internal = out.split("upgrade id ")[1].split()[0]
    done = wait_until_ended(local_stack, internal)
    assert (done["status"], done["completed"]) == ("completed", 5)
    assert local_stack.get(f"/api/upgrades/{internal}/status")["strategy"] == "batch"

    # Then the path through the rings shows both, and early is next
    path = local_stack.get("/api/promotions?component=exporter&version=v3.0.0")
    assert path["enforced"] is True and path["nextRing"] == "early"
    carried = {r["ring"]: [u["upgradeId"] for u in (r["evidence"] or {}).get("upgrades", [])] for r in path["rings"]}
    assert carried == {"staging": [staging], "internal": [internal], "early": [], "production": []}

    # When early is promoted (cust_abc142 fails there), then production has no customer: nothing after early
    code, out, err = run_cli(local_stack, "promote", "--component", "exporter", "--version", "v3.0.0")
    assert code == cli.EXIT_OK, err
    early = out.split("upgrade id ")[1].split()[0]
    done = wait_until_ended(local_stack, early)
    assert (done["status"], done["completed"], done["failed"]) == ("halted", 9, 1)  # one failure halts "all"
    code, out, err = run_cli(local_stack, "promote", "--component", "exporter", "--version", "v3.0.0")
    assert (code, out.strip()) == (cli.EXIT_OK, "exporter v3.0.0 completed on every ring: nothing to promote")


def test_promote_says_what_it_waits_for_and_force_is_recorded(local_stack: StackProcess):
    # Given mosquitto's rule with a bake, and a version that completed on staging
    assert run_cli(local_stack, "promotion-rules", "set", "mosquitto", "--min-success", "100", "--bake", "3600")[0] == 0
    code, out, err = run_cli(local_stack, "promote", "--component", "mosquitto", "--version", "2.0.20")
    assert code == cli.EXIT_OK, err
    wait_until_ended(local_stack, out.split("upgrade id ")[1].split()[0])
    # When promoted again during the bake
    code, out, err = run_cli(local_stack, "promote", "--component", "mosquitto", "--version", "2.0.20")
    # Then it says what it waits for, and until when, and exits 3
    assert code == cli.EXIT_FAILURES, err
    assert "waits before ring internal" in out and "baking on staging since" in out and "until" in out
    # When the operator forces it, with a reason
    code, out, err = run_cli(local_stack, "promote", "--component", "mosquitto", "--version", "2.0.20",
                             "--force-reason", "CVE fix, the bake is waived")  # fmt: skip
    assert code == cli.EXIT_OK, err
    forced = out.split("upgrade id ")[1].split()[0]
    wait_until_ended(local_stack, forced)
    # Then the override is recorded with the upgrade, who forced it, and what was missing
    path = local_stack.get("/api/promotions?component=mosquitto&version=2.0.20")
    internal = next(r for r in path["rings"] if r["ring"] == "internal")
    (override,) = internal["overrides"]
    assert (override["upgradeId"], override["reason"]) == (forced, "CVE fix, the bake is waived")
    assert [m["reason"] for m in override["missing"]] == ["bake_not_over"]
    # and the rule's history shows who set it
    code, out, _ = run_cli(local_stack, "promotion-rules", "history", "mosquitto")
    assert code == 0 and "set" in out and "minBakeSeconds" in out


def test_a_customer_moved_to_another_ring_is_targeted_there(local_stack: StackProcess):
    code, out, err = run_cli(local_stack, "customers", "set-ring", "cust_abc141", "staging")
    assert code == cli.EXIT_OK, err
    assert "cust_abc141: ring: early → staging" in out
    code, out, _ = run_cli(local_stack, "customers", "list", "--ring", "staging")
    assert code == 0 and "cust_abc141" in out and "6 customers" in out
    code, out, err = run_cli(local_stack, "customers", "set-ring", "cust_abc141", "--default")
    assert code == 0 and "staging → -" in out
    code, out, err = run_cli(local_stack, "customers", "set-ring", "cust_abc141", "beta")
    assert code == cli.EXIT_ERROR and "unknown ring 'beta'" in err and "HTTP 422" in err
