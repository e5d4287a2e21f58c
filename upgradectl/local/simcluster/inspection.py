"""What tests read of the simulated cluster: its Jobs, pods, workloads and releases as raw objects, how many
helm Jobs run (and ran at most at once), pod logs, and the writes refused for being protobuf."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from upgradectl.local.simcluster.host import SimulationHost
from upgradectl.local.simcluster.jobs import JOBS, PODS
from upgradectl.local.simcluster.releases import status_of
from upgradectl.local.simcluster.selectors import LabelSelector, Requirement
from upgradectl.local.simcluster.server import ProtobufWrite
from upgradectl.local.simcluster.workloads import DEPLOYMENTS

_ALL = LabelSelector(())
History = list[tuple[int, str, dict[str, Any]]]


class Inspection(SimulationHost):
    def running_jobs(self, upgrade_id: int | str | None = None) -> int:
        """helm Jobs running now (begun by the Job controller, not finished), overall or of one upgrade."""
        if self._jobs is None:
            return 0
        return self._jobs.running if upgrade_id is None else self._jobs.running_by_upgrade[str(upgrade_id)]

    def peak_running_jobs(self, upgrade_id: int | str | None = None) -> int:
        """The most helm Jobs that ran at once, overall or with the label upgrade-id=`upgrade_id`."""
        if self._jobs is None:
            return 0
        return self._jobs.peak if upgrade_id is None else self._jobs.peak_by_upgrade.get(str(upgrade_id), 0)

    def workload(self, namespace: str, release: str, component: str) -> dict[str, Any] | None:
        """The simulated Deployment `<release>-<component>` (raw dict) or None, for assertions."""

        def read() -> dict[str, Any] | None:
            assert self._objects is not None and self._workloads is not None
            if self._workloads.get(namespace, release, component) is None:
                return None
            obj = self._objects.get(DEPLOYMENTS, namespace, f"{release}-{component}")
            return None if obj is None else _copy(obj)

        return self._call(read)

    def release_history(self, namespace: str, release: str) -> History:
        """[(revision, status, user values as Helm stores them: nested)], oldest first.
        `flatten_values` turns the values into dotted keys."""

        def read() -> History:
            assert self._store is not None
            return [(int(r["version"]), status_of(r), r.get("config") or {})
                    for r in self._store.history(namespace, release)]  # fmt: skip

        return self._call(read)

    def release_record(self, namespace: str, release: str, revision: int | None = None) -> dict[str, Any] | None:
        """The decoded release JSON (Helm's ``release.Release``) of a revision (None: the newest)."""

        def read() -> dict[str, Any] | None:
            assert self._store is not None
            if revision is None:
                return self._store.last(namespace, release)
            return self._store.get(namespace, release, revision)

        return self._call(read)

    def job_log(self, namespace: str, pod_name: str) -> str | None:
        return self._logs.get((namespace, pod_name))

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Current Jobs by name (raw dicts), for assertions."""

        def collect() -> dict[str, dict[str, Any]]:
            assert self._objects is not None
            return {obj["metadata"]["name"]: _copy(obj) for obj in self._objects.select(JOBS, None, _ALL)}

        return self._call(collect)

    def pods(self, job_name: str | None = None) -> dict[str, dict[str, Any]]:
        """Current pods by name (raw dicts; only those of one Job when given), for assertions."""

        def collect() -> dict[str, dict[str, Any]]:
            assert self._objects is not None
            selector = (
                _ALL if job_name is None else LabelSelector((Requirement("job-name", "=", frozenset({job_name})),))
            )
            return {obj["metadata"]["name"]: _copy(obj) for obj in self._objects.select(PODS, None, selector)}

        return self._call(collect)

    @property
    def protobuf_writes(self) -> list[ProtobufWrite]:
        """Writes refused because they came as protobuf (client-go's default, e.g. a real helm's)."""
        return list(self._server.protobuf_writes) if self._server is not None else []


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied
