"""One helm run's state (its call, the revisions it read and wrote, what it printed) and the requests its
service account makes, authorized as the API server would (`upgradectl.local.simcluster.helm` runs it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal, Protocol

from upgradectl.local.simcluster.argv import HelmCall
from upgradectl.local.simcluster.charts import ChartCatalog, effective_images
from upgradectl.local.simcluster.releases import Record, ReleaseStore
from upgradectl.local.simcluster.workloads import Workloads

if TYPE_CHECKING:
    from upgradectl.local.simcluster.helm import Authorize, Outcome, Step

# What helm prints when its lock is taken, and when --wait runs out.
LOCKED = "another operation (install/upgrade/rollback) is in progress"
WAIT_EXPIRED = "context deadline exceeded"


class HelmSettings(Protocol):
    """The simulation's knobs a helm run reads (the SimulatedCluster's attributes, changeable live)."""

    job_duration_seconds: float
    auto_create_releases: bool
    wait_timeout_seconds: float | None
    time_scale: float
    unhealthy_customers: set[str]
    probe_unhealthy_customers: set[str]
    probe_broken_images: set[str]


class HelmRun:
    """What a helm run holds and the requests of its service account (`HelmProcess` is the run itself)."""

    def __init__(
        self,
        call: HelmCall,
        *,
        store: ReleaseStore,
        workloads: Workloads,
        catalog: ChartCatalog,
        settings: HelmSettings,
        customer_keys: Iterable[str],
        component: str | None,
        decide: Callable[[], Outcome],
        authorize: Authorize | None = None,
        onboard: Callable[[str], None] | None = None,
    ) -> None:
        self.call = call
        self._store, self._workloads, self._catalog, self._settings = store, workloads, catalog, settings
        self._keys = set(customer_keys)
        self._component = component
        self._decide = decide
        self._authorize = authorize
        self._onboard = onboard
        self.phase: Literal["working", "waiting", "rolling-back", "done"] = "working"
        self.exit_code: int | None = None
        self.output = ""
        self._work_until = 0.0
        self._wait_started = 0.0
        self._refusal: str | None = None
        self._original: Record | None = None  # the revision this upgrade replaces (helm keeps it in memory)
        self._current: Record | None = None  # rollback: the newest revision when it started
        self._new: Record | None = None  # the revision this run created
        self._upgrade_error = ""  # atomic: the upgrade's error, reported after the rollback

    @property
    def created_revision(self) -> int | None:
        return int(self._new["version"]) if self._new else None

    def _denied(self, verb: str, group: str, resource: str, name: str = "") -> str | None:
        if self._authorize is None:
            return None
        return self._authorize(verb, group, resource, self.call.namespace, name)

    @property
    def _failed_prefix(self) -> str:
        """How helm's command reports an error: upgrade wraps it, rollback does not."""
        return "Error: UPGRADE FAILED: " if self.call.operation == "upgrade" else "Error: "

    def _apply_denied(self, record: Record) -> str | None:
        """Helm's KubeClient.Update: get every object of the manifest, then patch it."""
        components = list(effective_images(record.get("chart") or {}, record.get("config") or {}))
        objects = [("", "services", "Service"), ("apps", "deployments", "Deployment")]
        for group, resource, _ in objects:
            for component in components:
                denied = self._denied("get", group, resource, f"{self.call.release}-{component}")
                if denied:
                    return f"could not get information about the resource: {denied}"
        for group, resource, kind in objects:
            for component in components:
                name = f"{self.call.release}-{component}"
                denied = self._denied("patch", group, resource, name)
                if denied:
                    return f'cannot patch "{name}" with kind {kind}: {denied}'
        return None

    def _wait_denied(self, record: Record) -> str | None:
        """--wait's ready checks: each Deployment, and the ReplicaSets behind it."""
        for component in effective_images(record.get("chart") or {}, record.get("config") or {}):
            denied = self._denied("get", "apps", "deployments", f"{self.call.release}-{component}")
            denied = denied or self._denied("list", "apps", "replicasets")
            if denied:
                return denied
        return None

    def _exit(self, code: int, text: str) -> Step:
        self.phase = "done"
        self.exit_code = code
        self.output += text
        return "exited"
