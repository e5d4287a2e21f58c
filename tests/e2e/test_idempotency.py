"""Every step is idempotent: a worker delivered twice with the same input acts once.

Step Functions runs a Task again on Retry, and Lambda may have run completely, partially or not at
all before the error. These tests call the real worker handlers directly, twice, with events shaped
exactly as statemachine/upgrade.asl.json builds them (Parameters, ItemSelector, ResultPath), against
the real PostgreSQL and the simulated cluster over HTTP. The last tests run whole executions while the
cluster's API answers errors, to show the state machine's Retry absorbs them.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from tests.api.helpers import continue_, deploy
from upgradectl.local.functions import STATEMACHINE, invoke

pytestmark = pytest.mark.e2e


ASL = json.loads(STATEMACHINE.read_text())


def _states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state by name, the Map's ItemProcessor states included."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        found[name] = state
        for nested in ("ItemProcessor", "Iterator"):
            if nested in state:
                found.update(_states(state[nested]))
    return found


STATES = _states(ASL)


def _path(document: Any, path: str) -> Any:
    value = document
    for part in [p for p in path.removeprefix("$").split(".") if p]:
        value = value[part]
    return value


def _resolve(template: Any, data: dict[str, Any], context: dict[str, Any], bucket: str) -> Any:
    """ASL Parameters / ItemSelector with JSONPath ("key.$": "$.x" / "$$.Map.Item.Value.x") values."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                assert isinstance(value, str) and value.startswith("$"), (key, value)
                out[key[:-2]] = _path(context, value[1:]) if value.startswith("$$") else _path(data, value)
            else:
                out[key] = _resolve(value, data, context, bucket)
        return out
    if template == "${ManifestBucket}":
        return bucket
    return template


class Driver:
    """Plays the state machine by hand: each Task's input is built from the ASL's own Parameters,
    ItemSelector and ResultPath, so these events are exactly the ones Step Functions passes."""

    def __init__(self, stack: Any, payload: dict[str, Any]) -> None:
        self.stack = stack
        self.payload = payload  # the execution input, as api_deploy starts it
        self.bucket = stack.runtime.engine.bucket
        self.state: dict[str, Any] = {}

    def event(self, state_name: str, data: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
        state = STATES[state_name]
        assert state["Type"] == "Task", state_name
        parameters = state.get("Parameters")
        if parameters is None:
            return copy.deepcopy(data)
        if "lambda:invoke" in state["Resource"]:
            parameters = parameters["Payload"]
        return _resolve(parameters, data, context or {}, self.bucket)

    @staticmethod
    def apply(state_name: str, data: dict[str, Any], result: Any) -> dict[str, Any]:
        result_path = STATES[state_name].get("ResultPath", "$")
        if result_path is None:
            return data
        if result_path == "$":
            return result
        merged = copy.deepcopy(data)
        *parents, leaf = result_path.removeprefix("$.").split(".")
        target = merged
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = result
        return merged

    def step(self, state_name: str, function: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.apply(state_name, data, invoke(function, self.event(state_name, data)))

    # --- parent ---------------------------------------------------------------------------------
    def prepare_event(self) -> dict[str, Any]:
        return self.event("PrepareRun", self.payload)

    def prepare(self) -> dict[str, Any]:
        """PrepareRun, then PrepareWave of the first wave (its manifest written)."""
        self.state = self.step("PrepareWave", "prepare_wave", self.step("PrepareRun", "prepare_run", self.payload))
        return self.state

    def manifest(self, wave: int | None = None) -> list[dict[str, Any]]:
        reader = STATES["RunWave"]["ItemReader"]["Parameters"]
        assert reader["Key.$"] == "States.Format('{}/wave-{}.json', $.manifestPrefix, $.wave)"
        key = f"{self.state['manifestPrefix']}/wave-{self.state['wave'] if wave is None else wave}.json"
        body = self.stack.runtime.engine.s3.get_object(Bucket=self.state["bucket"], Key=key)["Body"].read()
        return json.loads(body)

    def items(self) -> list[dict[str, Any]]:
        selector = STATES["RunWave"]["ItemSelector"]
        return [_resolve(selector, self.state, {"Map": {"Item": {"Value": item, "Index": index}}}, self.bucket)
                for index, item in enumerate(self.manifest())]  # fmt: skip

    # --- child ----------------------------------------------------------------------------------
    def begin_event(self, child: dict[str, Any]) -> dict[str, Any]:
        return self.event("BeginCustomer", child)

    def finish_event(self, child: dict[str, Any]) -> dict[str, Any]:
        return self.event("RecordResult", child)

    def run_child_until_finished(self, child: dict[str, Any]) -> dict[str, Any]:
        """BeginCustomer -> StartHelmJob -> (Wait -> CheckHelmJob)* ; returns the child's state."""
        child = self.step("BeginCustomer", "begin_customer", child)
        assert child["customer"]["action"] == "run", child
        child = self.step("StartHelmJob", "start_helm_job", child)
        deadline = time.monotonic() + 60
        while True:
            child = self.step("CheckHelmJob", "check_helm_job", child)
            if child["job"]["phase"] in ("succeeded", "failed"):
                return child
            assert time.monotonic() < deadline, child
            time.sleep(0.02)


def seed_release(cluster: Any, customer_id: str) -> None:
    """The customer's Helm release at revision 1 (make_customers: namespace = release = customer-NNNN)."""
    name = f"customer-{customer_id.removeprefix('cust_')}"
    cluster.add_release(name, name, values={"api.image.tag": "v1.1.0"})


def twice(name: str, event: dict[str, Any]) -> tuple[Any, Any]:
    """The same input, delivered twice (each a fresh JSON document, as Lambda receives it)."""
    text = json.dumps(event)
    return invoke(name, json.loads(text)), invoke(name, json.loads(text))


@pytest.fixture
def driver(stack, fake_workflow, make_customers):
    """An upgrade recorded by the real api_deploy (its execution start captured, not run)."""

    def make(n: int = 3, **request: Any) -> Driver:
        for customer_id in make_customers(n):
            seed_release(stack.cluster, customer_id)
        started = deploy(**{"component": "api", "version": "v1.2.0", "strategy": "all", **request})
        assert [name for name, _ in fake_workflow.started] == [started["jobId"]]
        return Driver(stack, fake_workflow.started[0][1])

    return make


def _upgrade(sql: Any) -> dict[str, Any]:
    rows = sql("SELECT * FROM system_upgrades")
    assert len(rows) == 1
    return rows[0]


def _log(sql: Any, log_id: int) -> dict[str, Any]:
    return sql("SELECT * FROM customer_upgrade_logs WHERE id = %s", log_id)[0]


# ------------------------------------------------------------------------------------------ parent
def test_prepare_run_and_prepare_wave_twice_write_the_same_plan_and_manifest_and_start_once(driver, sql):
    drive = driver(3, strategy="batch", batchSize=2)
    first = invoke("prepare_run", drive.prepare_event())
    started = _upgrade(sql)

    second = invoke("prepare_run", drive.prepare_event())

    assert second == first
    assert (first["totalWaves"], first["waveSizes"], first["waves"]) == (2, [2, 1], [0, 1])
    manifests = []
    for position in range(first["totalWaves"]):
        state = {**first, "wave": position}
        once, again = twice("prepare_wave", drive.event("PrepareWave", state))
        assert once == again
        drive.state = once
        manifests.append(drive.manifest(position))
        assert drive.manifest(position) == manifests[-1]
    assert sorted(i["logId"] for m in manifests for i in m) == [r["id"] for r in sql(
        "SELECT id FROM customer_upgrade_logs ORDER BY id")]  # fmt: skip
    again = _upgrade(sql)
    assert again["status"] == "in_progress"
    assert again["started_at"] == started["started_at"] is not None
    assert again["current_wave"] == 1  # the wave PrepareWave prepared last


def test_begin_customer_twice_claims_once(driver, sql):
    drive = driver(1)
    drive.prepare()
    [child] = drive.items()

    first, second = twice("begin_customer", drive.begin_event(child))

    assert first["action"] == second["action"] == "run"
    assert first == second
    assert (first["namespace"], first["release"], first["version"], first["attempt"]) == (
        "customer-0001", "customer-0001", "v1.2.0", 1)  # fmt: skip
    row = _log(sql, child["logId"])
    assert row["status"] == "in_progress" and row["attempt"] == 1
    assert row["started_at"] is not None


def test_start_helm_job_twice_creates_one_job_and_adopts_it(driver, sql):
    drive = driver(1)
    drive.prepare()
    [child] = drive.items()
    child = drive.step("BeginCustomer", "begin_customer", child)

    first, second = twice("start_helm_job", drive.event("StartHelmJob", child))

    assert first == second
    name = first["jobName"]
    # one create request reached the API server: the second delivery found the Job and adopted it ...
    assert [job.name for job in drive.stack.cluster.created_jobs] == [name]
    # ... and one Job exists
    assert list(drive.stack.cluster.jobs()) == [name]
    assert _log(sql, child["logId"])["job_name"] == name


def test_check_helm_job_twice_reads_without_side_effects(driver, sql):
    drive = driver(1)
    drive.prepare()
    [child] = drive.items()
    child = drive.run_child_until_finished(child)
    jobs = drive.stack.cluster.jobs()
    row = _log(sql, child["logId"])

    first, second = twice("check_helm_job", drive.event("CheckHelmJob", child))

    assert first == second
    assert first["phase"] == "succeeded"
    assert "output" not in first  # written to PostgreSQL by the worker, once (issue 29 item 4)
    (stored,) = sql("SELECT output FROM helm_outputs WHERE log_id = %s", child["logId"])
    assert "has been upgraded" in stored["output"]
    assert drive.stack.cluster.jobs() == jobs
    assert len(drive.stack.cluster.created_jobs) == 1
    assert _log(sql, child["logId"]) == row


def test_finish_customer_twice_counts_and_records_the_version_once(driver, sql):
    drive = driver(2)
    drive.prepare()
    child = drive.run_child_until_finished(drive.items()[0])

    first = invoke("finish_customer", drive.finish_event(child))
    row = _log(sql, child["logId"])
    version = sql("SELECT * FROM customer_component_versions WHERE customer_id = %s AND component = 'api'",
                  row["customer_id"])  # fmt: skip
    second = invoke("finish_customer", drive.finish_event(child))

    assert first == {"logId": child["logId"], "status": "completed", "recorded": True}
    assert second == {"logId": child["logId"], "status": "completed", "recorded": False}
    upgrade = _upgrade(sql)
    assert (upgrade["completed_customers"], upgrade["failed_customers"]) == (1, 0)
    assert _log(sql, child["logId"]) == row  # completed_at, output: written once
    assert sql("SELECT * FROM customer_component_versions WHERE customer_id = %s AND component = 'api'",
               row["customer_id"]) == version  # fmt: skip
    assert version[0]["version"] == "v1.2.0" and version[0]["previous_version"] == "v1.1.0"


def test_finish_customer_failure_delivered_after_success_changes_nothing(driver, sql):
    # A Catch -> RecordFailure racing a RecordResult that did commit: the first result stands.
    drive = driver(1)
    drive.prepare()
    child = drive.run_child_until_finished(drive.items()[0])
    invoke("finish_customer", drive.finish_event(child))
    row = _log(sql, child["logId"])

    late = invoke("finish_customer", {"upgradeId": child["upgradeId"], "logId": child["logId"],
                                      "runName": child["runName"],
                                      "failure": {"Error": "States.Timeout", "Cause": ""}})  # fmt: skip

    assert late["recorded"] is False and late["status"] == "completed"
    assert _log(sql, child["logId"]) == row
    upgrade = _upgrade(sql)
    assert (upgrade["completed_customers"], upgrade["failed_customers"]) == (1, 0)


def test_child_delivered_again_after_it_finished_starts_no_second_job(driver, sql):
    drive = driver(1)
    drive.prepare()
    [item] = drive.items()
    child = drive.run_child_until_finished(item)
    invoke("finish_customer", drive.finish_event(child))

    again = invoke("begin_customer", drive.begin_event(item))

    assert again["action"] == "done" and again["status"] == "completed"
    assert len(drive.stack.cluster.created_jobs) == 1
    assert _upgrade(sql)["completed_customers"] == 1


def test_evaluate_wave_twice_closes_unrecorded_rows_and_halts_once(driver, sql):
    # Given a canary wave of 2: one customer failed, the other's child never recorded a result
    drive = driver(20, strategy="canary", canaryPercent=10)
    drive.prepare()
    failing, lost = drive.items()
    drive.stack.cluster.fail_customers.add(failing["customerId"])
    invoke("begin_customer", drive.begin_event(lost))  # in_progress, and then nothing
    failed = drive.run_child_until_finished(failing)
    assert failed["job"]["phase"] == "failed"
    invoke("finish_customer", drive.finish_event(failed))

    first, second = twice("evaluate_wave", drive.event("EvaluateWave", drive.state))

    assert first["decision"] == second["decision"] == "halt"
    assert first["lastWave"]["unrecorded"] == 1
    assert second["lastWave"]["unrecorded"] == 0  # already closed: nothing to close twice
    assert first["lastWave"]["failed"] == second["lastWave"]["failed"] == 2
    upgrade = _upgrade(sql)
    assert (upgrade["completed_customers"], upgrade["failed_customers"]) == (0, 2)
    # halted when the first failure was recorded (the budget holds inside the wave); first reason wins
    assert upgrade["halt_reason"] == "wave 1 of 2: 1 of 2 customers failed (tolerated: 0)"
    assert upgrade["current_wave"] == 0
    assert _log(sql, lost["logId"])["status"] == "failed"


def test_evaluate_wave_twice_moves_to_the_gate_once(driver, sql):
    drive = driver(20, strategy="canary", canaryPercent=10)
    drive.prepare()
    for item in drive.items():
        invoke("finish_customer", drive.finish_event(drive.run_child_until_finished(item)))

    first, second = twice("evaluate_wave", drive.event("EvaluateWave", drive.state))

    assert first == second
    assert (first["decision"], first["wave"]) == ("await_continue", 1)
    upgrade = _upgrade(sql)
    # the next wave becomes current when it is prepared (after the gate)
    assert (upgrade["current_wave"], upgrade["halt_reason"], upgrade["status"]) == (0, None, "in_progress")
    assert (upgrade["completed_customers"], upgrade["failed_customers"]) == (2, 0)


def test_await_continue_twice_keeps_one_gate_and_continue_releases_it_once(driver, sql, fake_workflow):
    drive = driver(20, strategy="canary", canaryPercent=10)
    drive.prepare()
    for item in drive.items():
        invoke("finish_customer", drive.finish_event(drive.run_child_until_finished(item)))
    state = drive.step("EvaluateWave", "evaluate_wave", drive.state)
    assert state["decision"] == "await_continue"
    payload = _resolve(STATES["AwaitContinue"]["Parameters"]["Payload"], state,
                       {"Task": {"Token": "token-of-the-gate"}}, drive.bucket)  # fmt: skip

    first, second = twice("await_continue", payload)

    assert first == second == {"waiting": True, "gate": "approval"}
    upgrade = _upgrade(sql)
    assert (upgrade["status"], upgrade["task_token"], upgrade["current_wave"]) == (
        "awaiting_continue", "token-of-the-gate", 1)  # fmt: skip
    code, _ = continue_(str(state["upgradeId"]))
    assert code == 200
    assert [token for token, _ in fake_workflow.continued] == ["token-of-the-gate"]
    assert continue_(str(state["upgradeId"]))[0] == 409
    assert len(fake_workflow.continued) == 1


def test_finalize_run_twice_sets_the_final_status_once(driver, sql):
    drive = driver(2)
    drive.prepare()
    for item in drive.items():
        invoke("finish_customer", drive.finish_event(drive.run_child_until_finished(item)))
    state = drive.step("EvaluateWave", "evaluate_wave", drive.state)
    assert state["decision"] == "done"

    first = invoke("finalize_run", drive.event("FinalizeRun", state))
    final = _upgrade(sql)
    time.sleep(0.01)  # a second NOW() would differ
    second = invoke("finalize_run", drive.event("FinalizeRun", state))

    assert first == second
    assert (first["status"], first["completed"], first["failed"]) == ("completed", 2, 0)
    again = _upgrade(sql)
    assert again["completed_at"] == final["completed_at"] is not None
    assert again == final


# ------------------------------------------------------------------- whole runs with API failures
@pytest.mark.parametrize(
    ("status", "path_contains"),
    [(500, None), (429, None), (500, "/log")],
    ids=["500-any-request", "429-any-request", "500-on-pod-log"],
)
def test_cluster_api_errors_are_retried_and_every_customer_completes_once(
    stack, make_customers, sql, status, path_contains
):
    # Given the cluster's API answers the next 2 matching requests with an error
    ids = make_customers(4)
    for customer_id in ids:
        seed_release(stack.cluster, customer_id)
    fault = stack.cluster.fail_next(2, status=status, path_contains=path_contains)
    # When an upgrade runs
    started = deploy(component="api", version="v1.2.0", strategy="all")
    execution = stack.wait_execution(started["jobId"], timeout=60)
    # Then the faults were served (the retries, not luck, absorbed them) ...
    assert execution["status"] == "SUCCEEDED", execution
    assert fault.served == 2
    # ... every customer completed, with one Job each
    final = stack.status(started["upgradeId"])
    assert (final["status"], final["completed"], final["failed"]) == ("completed", 4, 0)
    jobs = stack.cluster.jobs()
    assert len(jobs) == 4
    customers = sorted(job["metadata"]["labels"]["upgrades.example.com/customer-id"] for job in jobs.values())
    assert customers == ids
    assert len({job.name for job in stack.cluster.created_jobs}) == 4
    logs = stack.logs(started["upgradeId"])["logs"]
    assert all(entry["error"] is None for entry in logs)
    # helm's output, except where the log read met the fault: the log is best effort (issue 27), the
    # outcome the Job's status, and the record says why the output is missing
    unavailable = [e for e in logs if e["output"].startswith("[helm output unavailable: pod log unavailable: HTTP 500")]
    assert len(unavailable) == (2 if path_contains == "/log" else 0), logs
    assert all("has been upgraded" in e["output"] for e in logs if e not in unavailable)
    upgrade = sql("SELECT completed_customers, failed_customers FROM system_upgrades")[0]
    assert (upgrade["completed_customers"], upgrade["failed_customers"]) == (4, 0)
