"""Helm 3.17, simulated: what ``helm upgrade`` and ``helm rollback`` do to a release, step by step.

A helm Job's pod runs one `HelmProcess`. It starts when the pod starts running and, like the real
client (helm.sh/helm/v3 pkg/action upgrade.go, rollback.go):

upgrade   pull the chart (``--version``, else the newest) -> read the release: none -> "has no deployed
          releases"; newest revision pending-* -> "another operation (install/upgrade/rollback) is in
          progress" (Helm's lock) -> values (see `new_config`) -> create revision N+1 pending-upgrade
          -> apply -> ``--wait``: until the release's workloads are ready or ``--timeout`` -> N+1
          deployed and the previous deployed one superseded; on failure N+1 failed and, with
          ``--atomic``, a rollback to the newest deployed/superseded revision (N+2).
rollback  target = REVISION, or the newest revision minus one whatever it is -> create N+1
          pending-rollback with the target's chart, values and manifest -> apply -> ``--wait`` ->
          N+1 deployed and every deployed revision superseded (a pending-* one stays as it is).
          Helm 3.17's rollback does not check the lock: it is how a stuck release is recovered.

A process killed in between (a Job deadline, a deleted Job) leaves whatever it wrote: a release
stuck in pending-*.

RBAC: helm runs as its pod's service account, and every request it makes is authorized as the API
server would (`authorize`): listing the release's Secrets (history), creating the new revision's
Secret, getting and patching each Service and Deployment of the manifest, ``--wait``'s reads
(Deployments, ReplicaSets) and updating the revision's Secret at the end. A forbidden request
fails helm with the error helm prints for it (``query: failed to query with labels: secrets is
forbidden: User "system:serviceaccount:..." cannot list resource "secrets" ...``). The writes of
the failure paths (failed revision, --atomic's rollback) are not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from upgradectl.local.simcluster.argv import HelmCall
from upgradectl.local.simcluster.charts import (
    ChartNotFound,
    component_names,
    render_manifest,
    workload_units,
)
from upgradectl.local.simcluster.helm_run import LOCKED, WAIT_EXPIRED, HelmRun
from upgradectl.local.simcluster.releases import (
    PENDING,
    Record,
    ansic,
    new_record,
    secret_name,
    status_of,
)
from upgradectl.local.simcluster.seeding import seed_release
from upgradectl.local.simcluster.values import Values, ValuesError, coalesce_tables, coalesce_values

Outcome = Literal["succeed", "fail", "timeout"]
Step = Literal["running", "exited", "killed"]
# (verb, API group, resource, namespace, name) -> None when allowed, else the API server's 403 message
Authorize = Callable[..., "str | None"]


def new_config(call: HelmCall, overrides: Values, current: Record) -> tuple[Values, Values | None]:
    """(user values of the new revision, chart values to store instead of the new chart's defaults).

    Helm 3.17 (pkg/action/upgrade.go reuseValues), checked in this order:
    --reset-values            only the command line's values.
    --reuse-values            the command line's values deep-merged over the current release's values;
                              and the stored chart values become the OLD chart's defaults coalesced
                              with the old values (so a new chart version's new defaults are not used).
    --reset-then-reuse-values the merge, with the new chart's own defaults.
    neither flag              the command line's values alone; only when it gives none at all are the
                              current release's values reused as they are.
    "Current" is the newest deployed revision (or the newest one when it failed and none is deployed).
    """
    old_config = current.get("config") or {}
    if call.reset_values:
        return overrides, None
    if call.reuse_values:
        old_chart_values = (current.get("chart") or {}).get("values") or {}
        return coalesce_tables(overrides, old_config), coalesce_values(old_chart_values, old_config)
    if call.reset_then_reuse_values:
        return coalesce_tables(overrides, old_config), None
    if not overrides and old_config:
        return coalesce_tables({}, old_config), None
    return overrides, None


# --- one helm run -------------------------------------------------------------------------------------


class HelmProcess(HelmRun):
    """The helm client of one Job's pod: `start` when the pod runs, then `step` on every tick."""

    # --- the timeline ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The pod runs: helm reads the release, and writes the new pending-* revision (or refuses)."""
        self._work_until = now + self._settings.job_duration_seconds
        if self.call.error:
            self._refusal = f"Error: {self.call.error}"
        elif self.call.operation == "upgrade":
            self._refusal = self._start_upgrade(now)
        else:
            self._refusal = self._start_rollback()

    def step(self, now: float, held: bool) -> Step:
        """Advance: "running" (not done yet), "exited" (exit_code and output set) or "killed" (the
        outcome was a deadline kill: the caller plays the Job controller's DeadlineExceeded)."""
        if self.phase == "done":
            return "exited"
        if held:
            return "running"
        if self.phase == "working":
            if now < self._work_until:
                return "running"
            if self._refusal is not None:
                return self._exit(1, self._refusal + "\n")
            outcome = self._decide()
            if outcome == "timeout":
                self.phase = "done"
                return "killed"
            return self._apply(outcome, now)
        if self.phase in ("waiting", "rolling-back"):
            namespace, release = self.call.namespace, self.call.release
            if self._workloads.ready_for_helm(namespace, release):
                return self._wait_succeeded()
            if now >= self._wait_started + self._wait_seconds():  # read live: tests may change it
                return self._wait_failed(now)
        return "running"

    def kill(self) -> None:
        """The pod is gone (Job deleted, deadline): nothing more is written."""
        self.phase = "done"

    # --- upgrade ------------------------------------------------------------------------------------

    def _start_upgrade(self, now: float) -> str | None:
        call, namespace, release = self.call, self.call.namespace, self.call.release
        try:
            chart = self._catalog.resolve(call.chart, call.version)
        except ChartNotFound as exc:
            return f"Error: {exc}"
        try:
            overrides = call.overrides()
        except ValuesError as exc:
            return f"Error: failed parsing --set data: {exc}"
        last = self._store.last(namespace, release)
        if last is None and not call.install and self._settings.auto_create_releases:
            # The customer existed before this Job (installed and onboarded); helm only meets it now.
            if self._onboard is not None:
                self._onboard(namespace)
            seed_release(self._store, self._workloads, self._catalog, namespace=namespace, release=release, now=now)
            last = self._store.last(namespace, release)
        denied = self._denied("list", "", "secrets")
        if denied:
            return f"Error: UPGRADE FAILED: query: failed to query with labels: {denied}"
        if last is None:
            if call.install:
                return self._create_install(chart.record(), overrides)
            return f'Error: UPGRADE FAILED: "{release}" has no deployed releases'
        if status_of(last) in PENDING:
            return f"Error: UPGRADE FAILED: {LOCKED}"
        deployed = self._store.deployed(namespace, release)
        if status_of(last) == "deployed":
            current = last
        elif deployed:
            current = deployed[0]
        elif status_of(last) in ("failed", "superseded"):
            current = last
        else:
            return f'Error: UPGRADE FAILED: "{release}" has no deployed releases'
        config, chart_values = new_config(call, overrides, current)
        chart_record = chart.record(chart_values)
        self._original = current
        self._new = new_record(
            name=release, namespace=namespace, version=int(last["version"]) + 1, status="pending-upgrade",
            chart=chart_record, config=config, manifest=render_manifest(chart_record, config, release),
            description="Preparing upgrade", first_deployed=(current.get("info") or {}).get("first_deployed"),
        )  # fmt: skip
        denied = self._denied("create", "", "secrets")
        if denied:
            self._new = None
            return f"Error: UPGRADE FAILED: create: failed to create: {denied}"
        self._store.create(self._new, max_history=self.call.history_max)
        return None

    def _create_install(self, chart_record: dict[str, Any], config: Values) -> str | None:
        release = self.call.release
        self.output += f'Release "{release}" does not exist. Installing it now.\n'
        denied = self._denied("create", "", "secrets")
        if denied:
            return f"Error: INSTALLATION FAILED: create: failed to create: {denied}"
        self._new = new_record(
            name=release, namespace=self.call.namespace, version=1, status="pending-install", chart=chart_record,
            config=config, manifest=render_manifest(chart_record, config, release),
            description="Initial install underway",
        )  # fmt: skip
        self._store.create(self._new, max_history=self.call.history_max)
        return None

    def _apply(self, outcome: Outcome, now: float) -> Step:
        """Helm's KubeClient.Update: the new manifest goes to the cluster (or the API refuses it)."""
        assert self._new is not None
        if outcome == "fail":
            name = f"{self.call.release}-{self._component or component_names()[0]}"
            error = (f'cannot patch "{name}" with kind Deployment: admission webhook "validate.policy.example.com" '
                     "denied the request: simulated failure")  # fmt: skip
            return self._operation_failed(error, now)
        denied = self._apply_denied(self._new)
        if denied:
            return self._operation_failed(denied, now)
        self._roll_out(self._new, now, marking=self.call.operation == "upgrade")
        denied = self._wait_denied(self._new) if self.call.wait else None
        if denied:
            return self._operation_failed(denied, now)
        if not self.call.wait:
            return self._wait_succeeded()
        self.phase = "waiting"
        self._wait_started = now
        return "running"

    def _wait_seconds(self) -> float:
        if self._settings.wait_timeout_seconds is not None:
            return self._settings.wait_timeout_seconds
        return self.call.timeout_seconds * self._settings.time_scale

    def _roll_out(self, record: Record, now: float, *, marking: bool) -> None:
        """The workloads take the images of `record`; an upgrade for an unhealthy customer brings
        images that never get ready (or whose health path fails) for that customer."""
        namespace, release = self.call.namespace, self.call.release
        units = workload_units(record.get("chart") or {}, record.get("config") or {})
        for unit in units:
            key, image = unit.key, unit.image
            workload = self._workloads.get(namespace, release, key)
            changed = workload is None or workload.image != image
            if marking and changed and self._keys & self._settings.unhealthy_customers:
                self._workloads.mark_image(namespace, release, key, image, probe_only=False)
            if marking and changed and self._keys & self._settings.probe_unhealthy_customers:
                self._workloads.mark_image(namespace, release, key, image, probe_only=True)
            if marking and changed and image in self._settings.probe_broken_images:
                self._workloads.mark_image(namespace, release, key, image, probe_only=True)
            self._workloads.set_image(namespace, release, key, image, now=now, active=unit.active)
        self._workloads.remove_others(namespace, release, {unit.key for unit in units})

    def _wait_succeeded(self) -> Step:
        assert self._new is not None
        if self.phase == "rolling-back":
            return self._atomic_rollback_done()
        denied = self._denied("update", "", "secrets", secret_name(self.call.release, int(self._new["version"])))
        if denied:  # the new revision stays pending-*: what a helm that cannot record its result leaves
            return self._exit(1, f"{self._failed_prefix}update: failed to update: {denied}\n")
        if self.call.operation == "rollback":
            return self._rollback_done()
        release, new = self.call.release, self._new
        if self._original is not None:
            self._original["info"]["status"] = "superseded"
            self._store.update(self._original)
        installing = status_of(new) == "pending-install"
        new["info"]["status"] = "deployed"
        new["info"]["description"] = self.call.description or ("Install complete" if installing else "Upgrade complete")
        self._store.update(new)
        header = "" if installing else f'Release "{release}" has been upgraded. Happy Helming!\n'
        return self._exit(
            0,
            f"{header}NAME: {release}\nLAST DEPLOYED: {ansic(new['info']['last_deployed'])}\n"
            f"NAMESPACE: {self.call.namespace}\nSTATUS: deployed\nREVISION: {new['version']}\nTEST SUITE: None\n",
        )

    def _wait_failed(self, now: float) -> Step:
        if self.phase == "rolling-back":
            return self._atomic_rollback_failed()
        if self.call.operation == "rollback":
            return self._rollback_wait_failed()
        return self._operation_failed(WAIT_EXPIRED, now)

    def _operation_failed(self, error: str, now: float) -> Step:
        if self.call.operation == "rollback":
            return self._rollback_apply_failed(error)
        return self._upgrade_failed(error, now)

    def _upgrade_failed(self, error: str, now: float) -> Step:
        """Helm's failRelease: the new revision failed; with --atomic a rollback follows."""
        assert self._new is not None
        release = self.call.release
        if self._original is not None:
            self._store.update(self._original)  # recorded as it was
        self._new["info"]["status"] = "failed"
        self._new["info"]["description"] = f'Upgrade "{release}" failed: {error}'
        self._store.update(self._new)
        if not self.call.atomic:
            return self._exit(1, f"Error: UPGRADE FAILED: {error}\n")
        good = [r for r in reversed(self._store.history(self.call.namespace, release))
                if status_of(r) in ("superseded", "deployed")]  # fmt: skip
        if not good:
            return self._exit(
                1,
                "Error: UPGRADE FAILED: unable to find a previously successful release when attempting to "
                f"rollback. original upgrade error: {error}\n",
            )
        self._upgrade_error = error
        target = good[0]
        self._current = self._new
        self._new = self._rollback_record(self._new, target)
        self._store.create(self._new)  # helm's --atomic rollback runs without a history limit
        self._roll_out(self._new, now, marking=False)
        self.phase = "rolling-back"
        self._wait_started = now
        return "running"

    def _atomic_rollback_done(self) -> Step:
        self._supersede_deployed()
        assert self._new is not None
        self._new["info"]["status"] = "deployed"
        self._store.update(self._new)
        return self._exit(
            1,
            f"Error: UPGRADE FAILED: release {self.call.release} failed, and has been rolled back due to atomic "
            f"being set: {self._upgrade_error}\n",
        )

    def _atomic_rollback_failed(self) -> Step:
        self._rollback_timed_out()
        return self._exit(
            1,
            "Error: UPGRADE FAILED: an error occurred while rolling back the release. original upgrade error: "
            f"{self._upgrade_error}: release {self.call.release} failed: {WAIT_EXPIRED}\n",
        )

    # --- rollback -----------------------------------------------------------------------------------

    def _start_rollback(self) -> str | None:
        namespace, release = self.call.namespace, self.call.release
        denied = self._denied("list", "", "secrets")
        if denied:
            return f"Error: query: failed to query with labels: {denied}"
        current = self._store.last(namespace, release)
        if current is None:
            return "Error: release: not found"
        target_number = self.call.revision or int(current["version"]) - 1
        target = self._store.get(namespace, release, target_number)
        if target is None:
            return f"Error: release has no {target_number} version"
        denied = self._denied("create", "", "secrets")
        if denied:
            return f"Error: create: failed to create: {denied}"
        self._current = current
        self._new = self._rollback_record(current, target)
        self._store.create(self._new, max_history=self.call.history_max)
        return None

    def _rollback_record(self, current: Record, target: Record) -> Record:
        """Rollback's prepareRollback: revision current+1 with the target's chart, values and manifest."""
        record = new_record(
            name=self.call.release, namespace=self.call.namespace, version=int(current["version"]) + 1,
            status="pending-rollback", chart=target.get("chart") or {}, config=target.get("config") or {},
            manifest=str(target.get("manifest") or ""), description=f"Rollback to {target['version']}",
            first_deployed=(current.get("info") or {}).get("first_deployed"),
            notes=str((target.get("info") or {}).get("notes") or ""),
        )  # fmt: skip
        if target.get("hooks"):
            record["hooks"] = list(target["hooks"])
        return record

    def _supersede_deployed(self) -> None:
        """Every revision in status deployed becomes superseded (Helm: issue #2941)."""
        for record in self._store.deployed(self.call.namespace, self.call.release):
            record["info"]["status"] = "superseded"
            self._store.update(record)

    def _rollback_done(self) -> Step:
        self._supersede_deployed()
        assert self._new is not None
        self._new["info"]["status"] = "deployed"
        self._store.update(self._new)
        return self._exit(0, "Rollback was a success! Happy Helming!\n")

    def _rollback_apply_failed(self, error: str) -> Step:
        assert self._new is not None and self._current is not None
        self._current["info"]["status"] = "superseded"
        self._new["info"]["status"] = "failed"
        self._new["info"]["description"] = f'Rollback "{self.call.release}" failed: {error}'
        self._store.update(self._current)
        self._store.update(self._new)
        return self._exit(1, f"Error: {error}\n")

    def _rollback_wait_failed(self) -> Step:
        self._rollback_timed_out()
        return self._exit(1, f"Error: release {self.call.release} failed: {WAIT_EXPIRED}\n")

    def _rollback_timed_out(self) -> None:
        """Rollback's --wait ran out: the new revision failed; the one it replaced is recorded as is."""
        assert self._new is not None and self._current is not None
        self._new["info"]["status"] = "failed"
        self._new["info"]["description"] = f'Release "{self.call.release}" failed: {WAIT_EXPIRED}'
        self._store.update(self._current)
        self._store.update(self._new)
