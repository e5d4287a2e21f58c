"""What the simulated cluster's parts share: its objects live on one asyncio loop, the API server's thread
(`SimulationHost._call` runs a function there), and a customer namespace is onboarded once. The parts
(`FaultControls`, `FleetControls`, `JobControls`, `Inspection`, `Served`) are the faces of one
`SimulatedCluster`, which holds the state they declare here."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

from upgradectl.local.simcluster.charts import ChartCatalog
from upgradectl.local.simcluster.faults import FaultBook
from upgradectl.local.simcluster.helm import Outcome
from upgradectl.local.simcluster.jobs import JobController
from upgradectl.local.simcluster.rbac import NAMESPACES, RbacManifests, apply_documents
from upgradectl.local.simcluster.releases import ReleaseStore
from upgradectl.local.simcluster.server import ApiServer
from upgradectl.local.simcluster.store import ObjectStore
from upgradectl.local.simcluster.workloads import Workloads

OutcomeFn = Callable[[dict[str, Any]], Outcome | None]


class SimulationHost:
    """The state `SimulatedCluster.__init__` and its start set, as its parts read it."""

    charts: ChartCatalog
    outcome: OutcomeFn | None
    fail_customers: set[str]
    failure_rate: float
    _random: random.Random
    _lock: threading.Lock  # guards the control sets shared with the loop thread
    _hold_all: bool
    _held_names: set[str]
    _hold_predicates: list[Callable[[dict[str, Any]], bool]]
    _released: set[str]
    _logs: dict[tuple[str, str], str]
    _faults: FaultBook
    _kubelet_faults: FaultBook
    _onboarded: set[str]
    _thread: threading.Thread | None
    _url: str | None
    _loop: asyncio.AbstractEventLoop | None
    _objects: ObjectStore | None
    _manifests: RbacManifests | None
    _server: ApiServer | None
    _store: ReleaseStore | None
    _workloads: Workloads | None
    _jobs: JobController | None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._url is not None

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (where every store write happens) and return its result."""
        if self._loop is None or self._objects is None or not self.running:
            raise RuntimeError("start the simulated cluster first")

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def _onboard(self, namespace: str) -> None:
        assert self._objects is not None and self._manifests is not None
        if namespace in self._onboarded:
            return
        if self._objects.get(NAMESPACES, "", namespace) is None:
            self._objects.put(NAMESPACES, {"metadata": {"name": namespace}, "spec": {"finalizers": ["kubernetes"]},
                                           "status": {"phase": "Active"}})  # fmt: skip
        apply_documents(self._objects, self._manifests.for_namespace(namespace))
        self._onboarded.add(namespace)
