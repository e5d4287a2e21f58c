"""The guarantees (docs/explanation/guarantees.md) on a REAL control plane: the real kube-apiserver and Job controller, the real
helm (3.17.2 and 4.1.4) run as upgrade-runner by the node agent, RBAC from k8s/rbac as it is. Driven over
the product's HTTP API; what the cluster holds is read back with the real helm."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator

import pytest
import yaml
from upgrader.cluster.job_spec import LABEL_TARGET_NAMESPACE

from tests.realcluster.conftest import HELM_TIMEOUT_SECONDS, Stack
from upgradectl.local.realcluster.cluster import RBAC_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def done(status: dict) -> bool:
    return status["status"] in ("completed", "halted", "failed", "aborted", "completed_with_failures")


def finished_jobs(stack: Stack, namespaces: set[str]) -> int:
    """The helm Jobs for these customer namespaces that the Job controller has marked Complete or Failed."""
    jobs = stack.cluster.request("GET", "/apis/batch/v1/namespaces/upgrade-system/jobs")["items"]
    ended = 0
    for job in jobs:
        if job["metadata"]["labels"].get(LABEL_TARGET_NAMESPACE) not in namespaces:
            continue
        conditions = (job.get("status") or {}).get("conditions") or []
        ended += any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions)
    return ended


def helm_jobs(stack: Stack, namespaces: set[str]) -> list[str]:
    """The names of every helm Job created for these customer namespaces."""
    jobs = stack.cluster.request("GET", "/apis/batch/v1/namespaces/upgrade-system/jobs")["items"]
    return sorted(
        j["metadata"]["name"] for j in jobs if j["metadata"]["labels"].get(LABEL_TARGET_NAMESPACE) in namespaces
    )


@contextlib.contextmanager
def never_ready(stack: Stack, namespaces: set[str]) -> Iterator[None]:
    """The node agent's fault rule by namespace: new pods there never get Ready (whatever their tag)."""
    faults = stack.cluster.faults.never_ready_namespaces
    faults.update(namespaces)
    try:
        yield
    finally:
        faults.difference_update(namespaces)


def first_in_plan(stack: Stack, body: dict) -> str:
    """The namespace of the customer the deploy would start first (the dry run's first wave)."""
    plan = stack.ok("POST", "/api/upgrades/plan", body)
    return str(plan["waves"][0]["customers"][0]["namespace"])


def test_canary_with_continue_upgrades_each_release_for_real(stack: Stack, customers) -> None:
    fleet = customers(3)
    ids = [cid for cid, _ in fleet]
    uid = stack.deploy(component="api", version="v1.2.0", strategy="canary", canaryPercent=10, customerIds=ids)
    waiting = stack.wait_status(uid, lambda s: s["status"] == "awaiting_continue")
    assert (waiting["completed"], waiting["pending"]) == (1, 2)
    # the canary customer's release went to revision 2 with the new tag, by the real helm; the others did not
    upgraded = [ns for _, ns in fleet if len(stack.history(ns, ns)) == 2]
    assert len(upgraded) == 1
    stack.ok("POST", f"/api/upgrades/{uid}/continue")
    final = stack.wait_status(uid, done)
    assert (final["status"], final["completed"], final["failed"]) == ("completed", 3, 0), final
    for _, ns in fleet:
        history = stack.history(ns, ns)
        assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]
        values = stack.values(ns, ns)
        assert values["api"]["image"]["tag"] == "v1.2.0"
        assert values["dashboard"]["image"]["tag"] == "v1.9.0"  # another component's value kept
    # the logs are the helm Jobs' pod logs, read through pods/log from the node agent
    logs = stack.logs(uid)
    assert len(logs) == 3
    for log in logs:
        assert log["status"] == "completed"
        assert "has been upgraded" in (log.get("output") or ""), log


def test_batch_then_exact_rollback_of_one_customer(stack: Stack, customers) -> None:
    fleet = customers(2)
    ids = [cid for cid, _ in fleet]
    uid = stack.deploy(component="api", version="v1.3.0", strategy="batch", batchSize=1, customerIds=ids)
    assert stack.wait_status(uid, done)["status"] == "completed"
    first_id, first_ns = fleet[0]
    # another component changes since (a second upgrade), then the first one is rolled back for this customer
    other = stack.deploy(component="dashboard", version="v2.0.0", strategy="all", customerIds=[first_id])
    assert stack.wait_status(other, done)["status"] == "completed"
    stack.ok("POST", f"/api/upgrades/{uid}/rollback/{first_id}")
    # the rollback is an exact restore by the real helm: revision 4, deployed once its --wait is over
    stack.wait(lambda: [h["status"] for h in stack.history(first_ns, first_ns)][-1:] == ["deployed"]
               and len(stack.history(first_ns, first_ns)) == 4, what="revision 4 deployed")  # fmt: skip
    values = stack.values(first_ns, first_ns)
    assert values["api"]["image"]["tag"] == "v1.1.0"  # the component rolled back ...
    assert values["dashboard"]["image"]["tag"] == "v2.0.0"  # ... and the later change of another component stays
    # the other customer is untouched by the rollback
    assert stack.values(fleet[1][1], fleet[1][1])["api"]["image"]["tag"] == "v1.3.0"


def test_a_failed_wait_rolls_back_automatically_and_the_budget_halts(stack: Stack, customers) -> None:
    fleet = customers(2)
    ids = [cid for cid, _ in fleet]
    # pods of the *-broken tag never get Ready: helm --wait times out for real, --atomic rolls back for real
    uid = stack.deploy(component="api", version="v9.9.9-broken", strategy="all", customerIds=ids)
    final = stack.wait_status(uid, done, timeout=HELM_TIMEOUT_SECONDS * 6 + 120)
    assert final["status"] in ("halted", "failed") and final["failed"] == 2, final
    for _, ns in fleet:
        history = stack.history(ns, ns)
        assert [h["status"] for h in history] == ["superseded", "failed", "deployed"], history
        assert stack.values(ns, ns)["api"]["image"]["tag"] == "v1.1.0"
    outputs = [log.get("output") or "" for log in stack.logs(uid)]
    assert all("context deadline exceeded" in o or "timed out" in o or "rolled back" in o for o in outputs), outputs


def test_a_verb_removed_from_k8s_rbac_fails_with_helms_error_naming_it(stack: Stack, customers, tmp_path) -> None:
    fleet = customers(1)
    ((cid, ns),) = fleet
    # the runner loses "update" on Deployments (k8s/rbac/30-helm-runner.yaml with the verb taken out)
    documents = list(yaml.safe_load_all((RBAC_DIR / "30-helm-runner.yaml").read_text()))
    role = next(d for d in documents if d and d["kind"] == "ClusterRole")
    original = json.loads(json.dumps(role))
    for rule in role["rules"]:
        if "deployments" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v not in ("update", "patch")]
    stack.cluster.apply([role])
    try:
        uid = stack.deploy(component="api", version="v1.4.0", strategy="all", customerIds=[cid])
        final = stack.wait_status(uid, done)
        assert final["failed"] == 1, final
        output = stack.logs(uid)[0].get("output") or ""
        assert "forbidden" in output and "deployments" in output, output
        assert ("cannot patch" in output) or ("cannot update" in output), output
    finally:
        stack.cluster.apply([original])


def test_drift_made_by_helm_by_hand_is_found_by_the_sync(stack: Stack, customers) -> None:
    fleet = customers(1)
    ((cid, ns),) = fleet
    stack.cluster.helm("upgrade", ns, stack.cluster.registry.chart_ref("customer-stack"), "--version", "1.5.0",
                       "--namespace", ns, "--reuse-values", "--set-string", "exporter.image.tag=v7.7.7", "--wait")  # fmt: skip
    result = stack.sync()
    assert result["counts"]["drifted"] >= 1, result
    customer = stack.ok("GET", f"/api/customers/{cid}")
    assert customer["versions"]["exporter"] == "v7.7.7", customer


def test_a_helm_killed_mid_upgrade_leaves_pending_upgrade_and_the_product_recovers(stack: Stack, customers) -> None:
    fleet = customers(1)
    ((cid, ns),) = fleet
    # a slow rollout: the new pods never get Ready, so helm is still waiting when it is killed
    uid = stack.deploy(component="api", version="v5.0.0-broken", strategy="all", customerIds=[cid])
    agent = stack.cluster.agent
    assert agent is not None
    run = stack.wait(lambda: next(iter(agent.helm_processes()), None), what="a helm process")
    stack.wait(lambda: [h["status"] for h in stack.history(ns, ns)][-1] == "pending-upgrade", what="pending-upgrade")
    os.kill(run.process.pid, signal.SIGKILL)
    final = stack.wait_status(uid, done, timeout=HELM_TIMEOUT_SECONDS * 6 + 120)
    assert final["failed"] == 1, final
    # the release is not left locked: a later upgrade of it succeeds
    again = stack.deploy(component="api", version="v5.0.1", strategy="all", customerIds=[cid])
    assert stack.wait_status(again, done, timeout=300)["status"] == "completed"
    assert stack.values(ns, ns)["api"]["image"]["tag"] == "v5.0.1"
    assert [h["status"] for h in stack.history(ns, ns)][-1] == "deployed"


def test_the_agent_refuses_a_job_whose_image_is_not_the_helm_it_runs(stack: Stack) -> None:
    cluster = stack.cluster
    assert cluster.agent is not None
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "wrong-helm", "namespace": "upgrade-system"},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "serviceAccountName": "upgrade-runner",
                    "containers": [{"name": "helm", "image": "alpine/helm:3.16.4", "command": ["helm"], "args": ["version"]}]}}}}  # fmt: skip
    cluster.request("POST", "/apis/batch/v1/namespaces/upgrade-system/jobs", job)
    try:

        def failed() -> bool:
            got = cluster.request("GET", "/apis/batch/v1/namespaces/upgrade-system/jobs/wrong-helm")
            return any(
                c["type"] == "Failed" and c["status"] == "True"
                for c in (got.get("status") or {}).get("conditions") or []
            )

        stack.wait(failed, timeout=60, what="the Job failed")
        pods = cluster.request("GET", "/api/v1/namespaces/upgrade-system/pods?labelSelector=job-name%3Dwrong-helm")[
            "items"
        ]
        terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 126 and "is not the helm this node runs" in terminated["message"]
        assert not any(pod.startswith("wrong-helm") for pod, _ in cluster.agent.helm_results)  # nothing was run
    finally:
        cluster.request(
            "DELETE", "/apis/batch/v1/namespaces/upgrade-system/jobs/wrong-helm?propagationPolicy=Background"
        )


def test_an_abort_mid_wave_creates_no_job_after_its_202(stack: Stack, customers) -> None:
    fleet = customers(3)
    agent = stack.cluster.agent
    assert agent is not None
    # the first customer's helm keeps waiting (its pods never get Ready) while the abort comes
    uid = stack.deploy(component="api", version="v6.0.0-broken", strategy="batch", batchSize=1,
                       customerIds=[c for c, _ in fleet], autoRollback=False)  # fmt: skip
    stack.wait(lambda: agent.helm_processes(), what="the first helm Job running")
    code, data = stack.call("POST", f"/api/upgrades/{uid}/abort", {"reason": "stop now"})
    assert code == 202, data
    final = stack.wait_status(uid, done, timeout=HELM_TIMEOUT_SECONDS * 6 + 120)
    assert final["status"] == "aborted" and final["skipped"] == 2, final
    namespaces = {ns for _, ns in fleet}
    jobs = [j for j in stack.cluster.request("GET", "/apis/batch/v1/namespaces/upgrade-system/jobs")["items"]
            if j["metadata"]["labels"].get("upgrades.example.com/target-namespace") in namespaces]  # fmt: skip
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]  # only the Job that ran before the abort
    untouched = [ns for _, ns in fleet if len(stack.history(ns, ns)) == 1]
    assert len(untouched) == 2


def test_an_execution_stopped_while_a_job_runs_is_reconciled_from_the_jobs_real_outcome(
    stack: Stack, customers
) -> None:
    fleet = customers(2)
    agent = stack.cluster.agent
    assert agent is not None
    started = stack.ok("POST", "/api/upgrades/deploy", {"component": "api", "version": "v7.0.0-broken",
                                                        "strategy": "all", "customerIds": [c for c, _ in fleet]})  # fmt: skip
    uid = str(started["upgradeId"])
    stack.wait(lambda: len(agent.helm_processes()) == 2, what="both helm Jobs running")
    stack.runtime.sfn.stop_execution(executionArn=stack.runtime.execution_arn(started["jobId"]),
                                     error="Stopped", cause="stopped in the console")  # fmt: skip
    assert stack.runtime.wait(started["jobId"])["status"] == "ABORTED"
    # the helm processes go on without the execution, and end (--wait times out, --atomic rolls back)
    stack.wait(lambda: not agent.helm_processes(), timeout=HELM_TIMEOUT_SECONDS * 4 + 60, what="helm done")
    # the pods ended; the real Job controller marks each Job Failed a moment later (what the reconciler reads)
    stack.wait(lambda: finished_jobs(stack, {ns for _, ns in fleet}) == 2, what="both Jobs Failed")
    stack.runtime.sweep(min_age_seconds=0)
    final = stack.status(uid)
    assert done(final) and final["inProgress"] == 0 and final["pending"] == 0, final
    assert final["failed"] == 2, final  # each customer got its Job's real outcome
    for _, ns in fleet:
        assert [h["status"] for h in stack.history(ns, ns)] == ["superseded", "failed", "deployed"]
    # nothing is left locked: a new deploy of the component goes through
    again = stack.deploy(component="api", version="v7.0.1", strategy="all", customerIds=[fleet[0][0]])
    assert stack.wait_status(again, done)["status"] == "completed"


def test_strategy_all_upgrades_every_release_for_real(stack: Stack, customers) -> None:
    fleet = customers(3)
    uid = stack.deploy(component="api", version="v1.2.1", strategy="all", customerIds=[c for c, _ in fleet])
    final = stack.wait_status(uid, done)
    assert (final["status"], final["completed"], final["failed"], final["totalWaves"]) == ("completed", 3, 0, 1), final
    for _, ns in fleet:
        history = stack.history(ns, ns)
        assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")], history
        assert stack.values(ns, ns)["api"]["image"]["tag"] == "v1.2.1"
    assert len(helm_jobs(stack, {ns for _, ns in fleet})) == 3


def test_the_in_wave_budget_tolerating_one_failure_completes_with_failures(stack: Stack, customers) -> None:
    fleet = customers(4)
    broken = fleet[2][1]
    with never_ready(stack, {broken}):  # this customer's new pods never get Ready: its helm --wait fails
        uid = stack.deploy(component="api", version="v1.2.2", strategy="all", failureThreshold={"count": 1},
                           customerIds=[c for c, _ in fleet])  # fmt: skip
        final = stack.wait_status(uid, done, timeout=HELM_TIMEOUT_SECONDS * 6 + 120)
    assert (final["status"], final["completed"], final["failed"]) == ("completed_with_failures", 3, 1), final
    for _, ns in fleet:
        statuses = [h["status"] for h in stack.history(ns, ns)]
        if ns == broken:  # --atomic rolled it back for real
            assert statuses == ["superseded", "failed", "deployed"], statuses
            assert stack.values(ns, ns)["api"]["image"]["tag"] == "v1.1.0"
        else:
            assert statuses == ["superseded", "deployed"], (ns, statuses)
            assert stack.values(ns, ns)["api"]["image"]["tag"] == "v1.2.2"


def test_the_budget_halts_on_a_failure_no_job_starts_after_and_resume_finishes_the_rest(
    stack: Stack, customers
) -> None:
    fleet = customers(4)
    ids = [c for c, _ in fleet]
    body = {"component": "api", "version": "v1.2.3", "strategy": "all", "maxConcurrency": 1,
            "failureThreshold": {"count": 0}, "customerIds": ids}  # fmt: skip
    broken = first_in_plan(stack, body)
    namespaces = {ns for _, ns in fleet}
    with never_ready(stack, {broken}):
        uid = stack.deploy(**body)
        halted = stack.wait_status(uid, done, timeout=HELM_TIMEOUT_SECONDS * 6 + 120)
        assert (halted["status"], halted["completed"], halted["failed"]) == ("halted", 0, 1), halted
        assert halted["haltReason"], halted
        # no Job was started after the halt: only the failed customer's, and the others' releases are untouched
        assert len(helm_jobs(stack, namespaces)) == 1, helm_jobs(stack, namespaces)
        assert [h["status"] for h in stack.history(broken, broken)] == ["superseded", "failed", "deployed"]
        assert all(len(stack.history(ns, ns)) == 1 for ns in namespaces - {broken})
    # resume (the failed customer not retried): the remaining customers are upgraded for real
    resumed = stack.ok("POST", f"/api/upgrades/{uid}/resume", {"retryFailed": False})
    assert resumed["attempt"] == 2 and resumed["customers"] == 3, resumed
    final = stack.wait_status(uid, lambda s: done(s) and s["jobId"] == resumed["jobId"])
    assert (final["status"], final["completed"], final["failed"]) == ("completed_with_failures", 3, 1), final
    for ns in namespaces - {broken}:
        assert [h["status"] for h in stack.history(ns, ns)] == ["superseded", "deployed"]
        assert stack.values(ns, ns)["api"]["image"]["tag"] == "v1.2.3"
    assert len(stack.history(broken, broken)) == 3  # not retried
    assert len(helm_jobs(stack, namespaces)) == 4


def test_blue_green_without_health_check_moves_the_active_slot_for_real(stack: Stack, customers) -> None:
    # no healthCheck.httpPath: the API server refuses service-proxy to loopback (docs/contracts.md)
    ((cid, ns),) = customers(1, chart_name="customer-stack-bluegreen")
    uid = stack.deploy(component="api", version="v1.2.0", strategy="all", blueGreen=True, customerIds=[cid])
    final = stack.wait_status(uid, done)
    assert (final["status"], final["completed"], final["blueGreen"]) == ("completed", 1, True), final
    # two helm upgrades by the real helm: the idle slot (green) gets the version, then the switch
    history = stack.history(ns, ns)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert all(h["chart"] == "customer-stack-bluegreen-2.0.0" for h in history), history
    slot_values = stack.values(ns, ns, revision=2)["api"]
    assert (slot_values.get("activeSlot", "blue"), slot_values["slots"]["green"]["tag"]) == ("blue", "v1.2.0")
    api = stack.values(ns, ns)["api"]
    assert api["activeSlot"] == "green"
    assert api["slots"] == {"blue": {"tag": "v1.1.0"}, "green": {"tag": "v1.2.0"}}  # the old slot keeps the old version
    # what the cluster runs: both slots' Deployments, the Service on the green one
    apps = f"/apis/apps/v1/namespaces/{ns}/deployments"
    images = {slot: stack.cluster.request("GET", f"{apps}/{ns}-api-{slot}")["spec"]["template"]["spec"]["containers"][0]["image"]
              for slot in ("blue", "green")}  # fmt: skip
    assert images["blue"].endswith(":v1.1.0") and images["green"].endswith(":v1.2.0"), images
    service = stack.cluster.request("GET", f"/api/v1/namespaces/{ns}/services/{ns}-api")
    assert service["spec"]["selector"]["upgrades.example.com/slot"] == "green", service["spec"]
    operations = [log["operation"] for log in stack.logs(uid)]
    assert operations == ["upgrade"], operations
    customer = stack.ok("GET", f"/api/customers/{cid}")
    assert customer["versions"]["api"] == "v1.2.0", customer
