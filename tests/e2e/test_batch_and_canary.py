from __future__ import annotations

import pytest

from tests.api.helpers import continue_, deploy

pytestmark = pytest.mark.e2e


def test_batch_of_4_over_10_customers_runs_batches_one_after_another(stack, make_customers, sql):
    make_customers(10)
    started = deploy(component="exporter", version="v1.1.0", strategy="batch", batchSize=4)
    assert started["waves"] == [4, 4, 2]
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    rows = sql("SELECT customer_id, wave, started_at, completed_at, status FROM customer_upgrade_logs ORDER BY id")
    assert {r["status"] for r in rows} == {"completed"}
    by_wave: dict[int, list] = {}
    for row in rows:
        by_wave.setdefault(row["wave"], []).append(row)
    assert [len(by_wave[w]) for w in sorted(by_wave)] == [4, 4, 2]
    # no customer of batch k+1 starts before every customer of batch k has finished
    for wave in (1, 2):
        last_finish_before = max(r["completed_at"] for r in by_wave[wave - 1])
        first_start = min(r["started_at"] for r in by_wave[wave])
        assert first_start >= last_finish_before, (wave, first_start, last_finish_before)
    # and the Jobs were created in batch order
    job_customers = [job.manifest["metadata"]["labels"]["upgrades.example.com/customer-id"]
                     for job in stack.cluster.created_jobs]  # fmt: skip
    wave_of = {r["customer_id"]: r["wave"] for r in rows}
    assert [wave_of[c] for c in job_customers] == sorted(wave_of[c] for c in job_customers)
    assert stack.status(started["upgradeId"])["status"] == "completed"


def test_canary_10_percent_of_20_waits_for_continue(stack, make_customers, sql):
    make_customers(20)
    started = deploy(component="api", version="v2.0.0", strategy="canary", canaryPercent=10)
    assert started["waves"] == [2, 18]
    uid = started["upgradeId"]
    # the canary wave runs, then the execution waits and the status says so
    waiting = stack.wait_for_status(uid, lambda s: s["status"] == "awaiting_continue")
    assert (waiting["completed"], waiting["failed"], waiting["pending"], waiting["inProgress"]) == (2, 0, 18, 0)
    assert waiting["awaitingContinue"] is True
    assert len(stack.cluster.created_jobs) == 2
    description = stack.runtime.sfn.describe_execution(executionArn=stack.runtime.execution_arn(started["jobId"]))
    assert description["status"] == "RUNNING"
    # the second wave's manifest is not written yet: it is written right before the wave runs, so a gate
    # that waits longer than the bucket keeps objects still finds it
    manifests = stack.runtime.engine.s3.list_objects_v2(Bucket=stack.runtime.engine.bucket,
                                                        Prefix=f"runs/{started['jobId']}/")  # fmt: skip
    assert [o["Key"] for o in manifests.get("Contents", [])] == [f"runs/{started['jobId']}/wave-0.json"]
    # continue releases it and the rest complete
    code, body = continue_(uid)
    assert code == 200 and body["message"] == "Upgrade continuation queued"
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    manifests = stack.runtime.engine.s3.list_objects_v2(Bucket=stack.runtime.engine.bucket,
                                                        Prefix=f"runs/{started['jobId']}/")  # fmt: skip
    assert len(manifests["Contents"]) == 2
    final = stack.status(uid)
    assert (final["status"], final["completed"], final["failed"]) == ("completed", 20, 0)
    assert len(stack.cluster.created_jobs) == 20
    # a second continue gets 409
    assert continue_(uid)[0] == 409
    upgrade = sql("SELECT continued_by, task_token FROM system_upgrades")[0]
    assert upgrade["continued_by"].endswith("PlatformOperator/jane") and upgrade["task_token"] is None


def test_failed_canary_halts_and_offers_no_gate(stack, make_customers):
    ids = make_customers(20)
    stack.cluster.fail_customers.add(ids[0])  # the first canary customer (ordered by id)
    started = deploy(component="api", version="v2.0.1", strategy="canary", canaryPercent=10)
    assert stack.wait_execution(started["jobId"])["status"] == "SUCCEEDED"
    final = stack.status(started["upgradeId"])
    assert final["status"] == "halted"
    assert "1 of 2 customers failed" in final["haltReason"]
    assert (final["completed"], final["failed"], final["skipped"], final["pending"]) == (1, 1, 18, 0)
    assert len(stack.cluster.created_jobs) == 2
    assert continue_(started["upgradeId"])[0] == 409
