"""The fleet a test or the local stack sets up in the simulated cluster: chart versions, Helm releases in
Helm's storage format, namespaces, and a release or a workload put in a given state."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

from upgradectl.local.simcluster.charts import ChartVersion
from upgradectl.local.simcluster.host import SimulationHost
from upgradectl.local.simcluster.rbac import NAMESPACES
from upgradectl.local.simcluster.releases import PENDING, SECRETS
from upgradectl.local.simcluster.seeding import seed_description, seed_release


class FleetControls(SimulationHost):
    def add_chart(self, chart: ChartVersion) -> None:
        """Publish another chart version in the simulated registry."""
        self.charts.add(chart)

    def add_release(
        self,
        namespace: str,
        release: str,
        *,
        status: str = "deployed",
        revision: int = 1,
        values: Mapping[str, Any] | None = None,
        chart_version: str | None = None,
        chart_name: str | None = None,
        onboard: bool = True,
    ) -> None:
        """Seed a Helm release in Helm's storage format: revisions 1..revision installed from the chart
        version (None: the newest) with `values` (dotted keys like ``{"api.image.tag": "v1.1.0"}`` or
        nested maps; stored nested in ``config``). The newest revision is in `status`; the one before a
        pending-* or failed revision stays deployed (as Helm leaves it), earlier ones are superseded.
        Each component gets a ready Deployment running the release's image. The namespace is
        onboarded (RBAC bindings) unless `onboard` is False."""

        def apply() -> None:
            assert self._store is not None and self._workloads is not None
            if onboard:
                self._onboard(namespace)
            seed_release(
                self._store, self._workloads, self.charts, namespace=namespace, release=release, status=status,
                revision=revision, values=values, chart_version=chart_version, chart_name=chart_name,
                now=time.monotonic(),
            )  # fmt: skip

        self._call(apply)

    def add_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """A namespace (`labels` added when it exists). Not onboarded: `onboard` or `add_release` do that."""

        def apply() -> None:
            assert self._objects is not None
            existing = self._objects.get(NAMESPACES, "", name)
            if existing is None:
                self._objects.put(NAMESPACES, {"metadata": {"name": name, "labels": {
                    "kubernetes.io/metadata.name": name, **dict(labels or {})}},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})  # fmt: skip
            elif labels:
                self._objects.merge(NAMESPACES, "", name, {"metadata": {"labels": dict(labels)}})

        self._call(apply)

    def remove_namespace(self, name: str) -> None:
        """The namespace is gone, with everything in it (as once Kubernetes has finalized its deletion):
        its Helm releases, their Secrets, the workloads, Jobs and pods."""

        def apply() -> None:
            assert self._objects is not None and self._store is not None and self._workloads is not None
            for release in {r for (ns, r) in self._store.releases() if ns == name}:
                self._store.delete(name, release)
            self._workloads.forget_namespace(name)
            for resource, kind in self._objects.kinds.items():
                if kind.namespaced:
                    for obj_name in self._objects.names(resource, name):
                        self._objects.delete(resource, name, obj_name)
            if self._objects.get(NAMESPACES, "", name) is not None:
                self._objects.delete(NAMESPACES, "", name)
            self._onboarded.discard(name)

        self._call(apply)

    def namespaces(self) -> list[str]:
        """Every namespace's name, sorted (for assertions)."""
        return sorted(self._call(lambda: list(self._objects.names(NAMESPACES, "")) if self._objects else []))

    def corrupt_release_secret(self, namespace: str, release: str, revision: int | None = None) -> None:
        """Overwrite a revision's Secret (None: the newest) with data that is not Helm's encoding (base64 of
        bytes that are neither gzip nor JSON), as a hand-edited or truncated Secret would be."""

        def apply() -> None:
            assert self._objects is not None and self._store is not None
            number = revision if revision is not None else int((self._store.last(namespace, release) or {})["version"])
            name = f"sh.helm.release.v1.{release}.v{number}"
            data = base64.b64encode(base64.b64encode(b"\x1f\x8b\x08 not a release")).decode()
            self._objects.merge(SECRETS, namespace, name, {"data": {"release": data}})

        self._call(apply)

    def set_release_status(self, namespace: str, release: str, status: str) -> None:
        """pending-*: a new revision in that state, as a helm client that died mid-operation leaves
        it; otherwise the newest revision's status changes."""

        def apply() -> None:
            assert self._store is not None
            last = self._store.last(namespace, release)
            if last is None:
                raise KeyError(f"no release {namespace}/{release}")
            if status in PENDING:
                last["version"] = int(last["version"]) + 1
                last["info"].update(status=status, description=seed_description(last["version"], status, release))
                self._store.create(last)
            else:
                last["info"]["status"] = status
                self._store.update(last)

        self._call(apply)

    def set_workload_health(self, namespace: str, release: str, component: str, healthy: bool) -> None:
        """Make the Deployment `<release>-<component>` healthy (all replicas ready) or not (none ready,
        and ProgressDeadlineExceeded when `stuck_rollout_fails`) right away, without a new generation.
        Creates the Deployment when it does not exist yet."""

        def apply() -> None:
            assert self._workloads is not None
            self._workloads.set_health(namespace, release, component, healthy, now=time.monotonic())

        self._call(apply)
