"""The simulated cluster's faults: HTTP errors and outages in front of its API server, and a kubelet the API
server cannot reach behind it (pod logs it cannot fetch)."""

from __future__ import annotations

import asyncio

from upgradectl.local.simcluster.faults import Fault, Outage
from upgradectl.local.simcluster.host import SimulationHost


class FaultControls(SimulationHost):
    def fail(
        self,
        status: int = 500,
        *,
        times: int | None = None,
        seconds: float | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: int | None = None,
    ) -> Fault:
        """Answer matching requests (`method`, `path_contains`) with HTTP `status`: the next `times`
        of them, or every one for `seconds`, or both (whichever ends first). 429 and 503 carry
        Retry-After (`retry_after`, default 1). Returns the fault: ``served`` counts its answers."""
        return self._faults.add(Fault.lasting(status, times, seconds, method, path_contains, retry_after))

    def fail_next(
        self, n: int = 1, *, status: int = 500, path_contains: str | None = None, method: str | None = None
    ) -> Fault:
        """Answer the next `n` matching requests with HTTP `status` (see `fail`)."""
        return self.fail(status, times=n, method=method, path_contains=path_contains)

    def kubelet_unreachable(
        self,
        status: int = 500,
        *,
        times: int | None = None,
        seconds: float | None = None,
        pod_contains: str | None = None,
    ) -> Fault:
        """The API server cannot reach the kubelet of the node a pod ran on (the node scaled down or
        replaced after its Job finished, a kubelet restart, a firewall on the kubelet port): reading a
        matching pod's log (`pods/log`, pod name containing `pod_contains`) answers HTTP `status` with
        kube-apiserver's own error ("Get https://<node>:10250/containerLogs/...: dial tcp ...: connect:
        connection refused"), after authentication and RBAC and only for a pod that exists, as the real
        one does. The next `times` such reads, or every one for `seconds`, or both (whichever ends
        first). Everything else (Jobs, pods, helm) is unaffected. Returns the fault (``served``)."""
        return self._kubelet_faults.add(Fault.lasting(status, times, seconds, "GET", pod_contains))

    def unreachable(self, seconds: float, *, mode: str = "refuse") -> Outage:
        """The API server unreachable for `seconds`: "refuse" (not listening: connections refused,
        open ones cut) or "reset" (every request's connection reset). Jobs and helm keep running."""
        if mode not in ("refuse", "reset"):
            raise ValueError("mode is 'refuse' or 'reset'")
        outage = Outage(seconds, mode)
        with self._faults._lock:
            self._faults.outages.append(outage)
        if mode == "refuse":
            self._call(lambda: self._server.refuse(outage) if self._server is not None else None)
        return outage

    def end_outage(self, outage: Outage) -> None:
        """End an outage now (a test that need not wait for its time to pass)."""
        outage.ended = True
        if outage.mode == "refuse" and self._server is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._server.listen_again(outage), self._loop).result(timeout=30)

    @property
    def faults(self) -> list[Fault]:
        """Every HTTP fault added, in order (``served`` says how often each answered)."""
        return list(self._faults.faults)

    @property
    def kubelet_faults(self) -> list[Fault]:
        """Every `kubelet_unreachable` fault added, in order."""
        return list(self._kubelet_faults.faults)

    def unserved_faults(self) -> list[Fault]:
        """Count-limited faults (kubelet ones included) that have not answered as many requests as they
        were meant to."""
        return self._faults.unserved() + self._kubelet_faults.unserved()

    def _take_fault(self, path: str, method: str = "GET") -> Fault | None:
        """Serve one request of `method` to `path` from the faults (as the API server would)."""
        return self._faults.take(method, path)
