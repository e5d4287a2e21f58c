"""What the simulated API server lets the simulation answer (on the server loop): a pod's log (or the
kubelet's error when it cannot be reached) and the service proxy in front of the simulated workloads."""

from __future__ import annotations

import aiohttp.web

from upgradectl.local.simcluster.api_errors import StoreError
from upgradectl.local.simcluster.host import SimulationHost
from upgradectl.local.simcluster.jobs import PODS
from upgradectl.local.simcluster.request_info import RequestInfo
from upgradectl.local.simcluster.server import error_response


class Served(SimulationHost):
    def _serve_log(self, info: RequestInfo) -> aiohttp.web.StreamResponse:
        namespace, pod = info.namespace, info.name
        assert self._objects is not None
        log = self._logs.get((namespace, pod))
        missing = StoreError(404, "NotFound", f'pods "{pod}" not found', {"name": pod, "kind": "pods"})
        if self._objects.get(PODS, namespace, pod) is None:
            return error_response(missing)
        fault = self._kubelet_faults.take("GET", pod)
        if fault is not None:  # the pod is known; its node's kubelet does not answer the API server
            container = info.query.get("container") or "helm"
            message = (f'Get "https://127.0.0.1:10250/containerLogs/{namespace}/{pod}/{container}": '
                       "dial tcp 127.0.0.1:10250: connect: connection refused")  # fmt: skip
            return error_response(StoreError(fault.status, fault.reason, message))
        if log is None:
            return error_response(missing)
        # The client only accepts pod logs as text/plain.
        return aiohttp.web.Response(text=log, content_type="text/plain", charset="utf-8")

    async def _serve_service_proxy(self, info: RequestInfo) -> aiohttp.web.StreamResponse:
        """The API server's service proxy in front of the simulated workloads: 200 "ok" when the pods
        behind the service are ready, 503 "no endpoints available" when not, and the application's
        own 503 when its health path fails (``probe_unhealthy_customers``)."""
        if info.method != "GET":
            return error_response(StoreError(405, "MethodNotAllowed", "the simulated service proxy serves GET only"))
        parts = info.name.split(":")  # [scheme:]name[:port]
        service = parts[1] if len(parts) == 3 else parts[0]
        assert self._workloads is not None
        answer = self._workloads.proxy_answer(info.namespace, service)
        if answer is None:
            return error_response(StoreError(404, "NotFound", f'services "{service}" not found',
                                             {"name": service, "kind": "services"}))  # fmt: skip
        status, text = answer
        if status == 200:
            return aiohttp.web.Response(text=text, content_type="text/plain", charset="utf-8")
        if text.startswith("no endpoints"):  # said by the API server itself
            return error_response(StoreError(503, "ServiceUnavailable", text))
        return aiohttp.web.Response(text=text, status=status, content_type="text/plain", charset="utf-8")
