"""A SIMULATED Kubernetes cluster for tests and the local stack (not deployed).

kmock's ``KubernetesEmulator`` serves a real HTTP API on 127.0.0.1, so the official client and our
``KubernetesClusterGateway`` run unchanged against it. kmock has no controllers, so this module also
plays the Job controller and Helm: a Job "runs" for ``job_duration_seconds``, then it succeeds or
fails, gets a pod with a terminated container and helm-like logs, and the customer's Helm release
Secrets move on the way ``helm upgrade --atomic`` / ``helm rollback`` would move them.

What kmock does not do and this adds: pod logs as text/plain, ``labelSelector`` on LIST (equality
terms), fault injection, the Job/pod lifecycle, Helm release Secrets, the component workloads a
release runs (one Deployment ``<release>-<component>`` per component, rolled out by every successful
helm Job) and the service proxy (``/api/v1/namespaces/<ns>/services/<svc>/proxy/<path>``) in front of
them. Watches see client writes and the Job controller's changes (best effort), not the Deployments.

    with SimulatedCluster(fail_customers={"c-2"}) as cluster:
        api_client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))
        ...
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import aiohttp.web
import attrs
from kmock import KubernetesEmulator, ResourceInfo, Server

Outcome = Literal["succeed", "fail", "timeout"]
OutcomeFn = Callable[[dict[str, Any]], "Outcome | None"]
HoldTarget = str | Callable[[dict[str, Any]], bool] | None

_JOBS = "batch/v1/jobs"
_PODS = "v1/pods"
_SECRETS = "v1/secrets"
_DECLARED = (_JOBS, _PODS, _SECRETS, "v1/namespaces", "apps/v1/deployments", "apps/v1/statefulsets")
_CUSTOMER_ANNOTATION = "upgrades.example.com/customer-id"
_CUSTOMER_LABEL = "upgrades.example.com/customer-id"
_TARGET_NS_LABEL = "upgrades.example.com/target-namespace"
_COMPONENT_LABEL = "upgrades.example.com/component"
_OPERATION_LABEL = "upgrades.example.com/operation"
_DEPLOYMENTS = "apps/v1/deployments"
_INSTANCE = "app.kubernetes.io/instance"
_APP_COMPONENT = "app.kubernetes.io/component"
COMPONENTS = ("api", "dashboard", "exporter", "mosquitto")
WORKLOAD_REPLICAS = 2
# GET /api/v1/namespaces/<ns>/services/[<scheme>:]<name>[:<port>]/proxy[/<path>] (path %-decoded)
_SERVICE_PROXY = re.compile(r"^/api/v1/namespaces/([^/]+)/services/([^/]+)/proxy(?:/(.*))?$")


def _now_iso() -> str:
    return dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}  # fmt: skip


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass(frozen=True)
class CreatedJob:
    """One Job create request as the API server saw it (duplicates included)."""

    index: int
    time: float  # time.time() when the request arrived
    name: str
    namespace: str
    manifest: dict[str, Any]


@dataclass
class _Fault:
    remaining: int
    status: int
    path_contains: str | None


@dataclass
class _JobRun:
    namespace: str
    name: str
    manifest: dict[str, Any]
    seen_at: float
    pod_name: str
    uid: str
    finished: bool = False
    outcome: Outcome | None = None


@dataclass
class _Workload:
    """The simulated Deployment `<release>-<component>` and where its rollout stands."""

    namespace: str
    release: str
    component: str
    uid: str
    created: str
    generation: int = 0
    image: str = ""
    healthy: bool = True  # False: the new pods never become ready
    changed_at: float = 0.0  # time.monotonic() of the last change
    settled: bool = True  # rollout_seconds have passed since the change
    ready: int = 0  # readyReplicas as last written
    ready_before: int = 0  # readyReplicas when the change started (old pods keep serving)

    @property
    def name(self) -> str:
        return f"{self.release}-{self.component}"


@dataclass
class _HelmCall:
    operation: str
    release: str
    namespace: str
    set_values: dict[str, str] = field(default_factory=dict)
    revision: int | None = None


def _parse_helm(manifest: dict[str, Any]) -> _HelmCall | None:
    try:
        container = manifest["spec"]["template"]["spec"]["containers"][0]
    except (KeyError, IndexError, TypeError):
        return None
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    if len(argv) < 3 or argv[0] != "helm" or argv[1] not in ("upgrade", "rollback"):
        return None
    call = _HelmCall(operation=argv[1], release=argv[2], namespace="default")
    rest = argv[3:]
    if call.operation == "rollback" and rest and rest[0].isdigit():
        call.revision = int(rest[0])
    for flag, value in zip(rest, rest[1:], strict=False):
        if flag in ("--namespace", "-n"):
            call.namespace = value
        elif flag in ("--set-string", "--set") and "=" in value:
            key, _, val = value.partition("=")
            call.set_values[key] = val
    return call


@attrs.define(kw_only=True)
class _ApiServer(KubernetesEmulator):
    """kmock's emulator with one interception point for what kmock does not do itself."""

    sim: Any = None

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        intercepted = await self.sim._intercept(request)
        if intercepted is not None:
            return intercepted
        return await super()._handle(request)


class SimulatedCluster:
    """In-process fake Kubernetes API + Job controller + Helm release bookkeeping.

    Outcome of a Job, first match wins: a pending-* release (helm refuses) -> fail; ``outcome(manifest)``
    returning "succeed" / "fail" / "timeout"; customer id (or namespace) in ``fail_customers`` -> fail;
    ``failure_rate`` (seeded) -> fail; else succeed. "timeout" plays an activeDeadlineSeconds kill that
    leaves the release stuck in pending-upgrade.

    Workloads: ``add_release`` creates a ready Deployment ``<release>-<component>`` per component; every
    successful upgrade/rollback/recover Job changes the one of its component (``metadata.generation``
    + 1) and it is ready again ``rollout_seconds`` later. After an upgrade of a customer (id or
    namespace) in ``unhealthy_customers`` its pods never get ready (readyReplicas 0, updatedReplicas 2)
    and, with ``stuck_rollout_fails``, the Deployment reports ProgressDeadlineExceeded once
    ``rollout_seconds`` have passed; a rollback/recover brings the old, healthy version back. The
    service proxy answers 200 "ok" for a service ``<release>-<component>`` (or ``<release>``) whose
    pods are ready and 503 for one whose pods are not.
    """

    def __init__(
        self,
        *,
        job_duration_seconds: float = 0.2,
        failure_rate: float = 0.0,
        seed: int = 0,
        fail_customers: Iterable[str] = (),
        outcome: OutcomeFn | None = None,
        auto_create_releases: bool = True,
        log_text: Callable[[dict[str, Any], str], str] | None = None,
        poll_interval: float = 0.02,
        rollout_seconds: float = 0.0,
        unhealthy_customers: Iterable[str] = (),
        stuck_rollout_fails: bool = True,
    ) -> None:
        self.job_duration_seconds = job_duration_seconds
        self.failure_rate = failure_rate
        self.fail_customers: set[str] = set(fail_customers)
        self.outcome = outcome
        # helm upgrade (without --install) fails on a missing release; by default create revision 1
        # on first sight so a local stack works without seeding every customer.
        self.auto_create_releases = auto_create_releases
        # Replaces the generated helm output: (job manifest, generated text) -> text.
        self.log_text = log_text
        self.poll_interval = poll_interval
        # How long a changed Deployment takes to become ready (or, unhealthy, to pass its deadline).
        self.rollout_seconds = rollout_seconds
        self.unhealthy_customers: set[str] = set(unhealthy_customers)
        self.stuck_rollout_fails = stuck_rollout_fails
        self.created_jobs: list[CreatedJob] = []
        self._random = random.Random(seed)  # noqa: S311 - simulation, not security
        self._faults: list[_Fault] = []
        self._hold_all = False
        self._held_names: set[str] = set()
        self._hold_predicates: list[Callable[[dict[str, Any]], bool]] = []
        self._released: set[str] = set()
        self._runs: dict[tuple[str, str], _JobRun] = {}
        self._logs: dict[tuple[str, str], str] = {}
        self._workloads: dict[tuple[str, str], _Workload] = {}  # (namespace, deployment name)
        self._api: _ApiServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._url: str | None = None
        self._lock = threading.Lock()  # guards the control sets shared with the loop thread

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the simulated cluster is not running")
        return self._url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._url is not None

    def start(self) -> SimulatedCluster:
        if self._thread is not None:
            raise RuntimeError("a SimulatedCluster starts once")
        self._thread = threading.Thread(target=self._run, name="simulated-cluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the simulated cluster did not start within 30 s")
        if self._startup_error is not None:
            self._thread.join(timeout=5)
            raise RuntimeError("the simulated cluster failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop the server and the controller; join the thread (the port is free afterwards)."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may be closing already
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        if thread.is_alive():
            raise RuntimeError("the simulated cluster thread did not stop")
        self._url = None

    def __enter__(self) -> SimulatedCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start() or kept for debugging
            self._startup_error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        api = _ApiServer(sim=self)
        for resource in _DECLARED:  # LIST of a kind with no objects yet must answer 200, not 404
            api.resources[resource] = ResourceInfo()
        self._api = api
        async with api, Server(api, host="127.0.0.1") as server:
            self._url = f"http://127.0.0.1:{server.port}"
            controller = asyncio.create_task(self._controller())
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                controller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await controller

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop under the emulator's lock and return its result."""
        if self._loop is None or self._api is None or not self.running:
            raise RuntimeError("start the simulated cluster first")
        api = self._api

        async def locked() -> Any:
            async with api._lock:
                return fn()

        return asyncio.run_coroutine_threadsafe(locked(), self._loop).result(timeout=30)

    # --- test controls ---------------------------------------------------------------------------

    def fail_next(self, n: int = 1, *, status: int = 500, path_contains: str | None = None) -> None:
        """Answer the next `n` requests (whose path contains `path_contains`) with HTTP `status`."""
        with self._lock:
            self._faults.append(_Fault(remaining=n, status=status, path_contains=path_contains))

    def hold(self, target: HoldTarget = None) -> None:
        """Keep Jobs running until `release`: all (None), one Job name, or those a predicate picks."""
        with self._lock:
            if target is None:
                self._hold_all = True
            elif isinstance(target, str):
                self._held_names.add(target)
                self._released.discard(target)
            else:
                self._hold_predicates.append(target)

    def release(self, job_name: str | None = None) -> None:
        """Let one held Job (or, with None, every held Job and every hold rule) finish."""
        with self._lock:
            if job_name is None:
                self._hold_all = False
                self._held_names.clear()
                self._hold_predicates.clear()
                self._released.clear()
            else:
                self._held_names.discard(job_name)
                self._released.add(job_name)

    def add_release(
        self,
        namespace: str,
        release: str,
        *,
        status: str = "deployed",
        revision: int = 1,
        values: dict[str, str] | None = None,
    ) -> None:
        """Seed a Helm release: revisions 1..revision, the last in `status`, earlier ones superseded
        (the one before a pending-* revision stays deployed, as during a real helm run), and one ready
        Deployment per component (api, dashboard, exporter, mosquitto)."""

        def apply() -> None:
            self._delete_release_secrets(namespace, release)
            for number in range(1, revision + 1):
                state = status if number == revision else "superseded"
                if number == revision - 1 and status.startswith("pending-"):
                    state = "deployed"
                self._put_release_secret(namespace, release, number, state, dict(values or {}))
            now = time.monotonic()
            for component in COMPONENTS:
                self._change_workload(namespace, release, component, healthy=True, now=now, settle=True)

        self._call(apply)

    def set_release_status(self, namespace: str, release: str, status: str) -> None:
        """pending-*: start a new revision in that state (helm died mid-operation); otherwise change
        the status of the newest revision."""

        def apply() -> None:
            history = self._release_history(namespace, release)
            if not history:
                raise KeyError(f"no release {namespace}/{release}")
            number, _, values = history[-1]
            if status.startswith("pending-"):
                self._put_release_secret(namespace, release, number + 1, status, values)
            else:
                self._put_release_secret(namespace, release, number, status, values)

        self._call(apply)

    def set_workload_health(self, namespace: str, release: str, component: str, healthy: bool) -> None:
        """Make the Deployment `<release>-<component>` healthy (all replicas ready) or not (none ready,
        and ProgressDeadlineExceeded when `stuck_rollout_fails`) right away, without a new generation.
        Creates the Deployment when it does not exist yet."""

        def apply() -> None:
            workload = self._workloads.get((namespace, f"{release}-{component}"))
            if workload is None:
                self._change_workload(namespace, release, component, healthy=healthy, now=time.monotonic(), settle=True)
                return
            workload.healthy, workload.settled = healthy, True
            self._write_workload(workload)

        self._call(apply)

    def workload(self, namespace: str, release: str, component: str) -> dict[str, Any] | None:
        """The simulated Deployment `<release>-<component>` (raw dict) or None, for assertions."""

        def read() -> dict[str, Any] | None:
            assert self._api is not None
            if (namespace, f"{release}-{component}") not in self._workloads:
                return None
            obj = self._api.objects[_DEPLOYMENTS, namespace, f"{release}-{component}"]
            return None if obj.deleted else json.loads(json.dumps(obj.raw))

        return self._call(read)

    def release_history(self, namespace: str, release: str) -> list[tuple[int, str, dict[str, str]]]:
        """[(revision, status, values set via --set-string)], oldest first."""
        return self._call(lambda: self._release_history(namespace, release))

    def job_log(self, namespace: str, pod_name: str) -> str | None:
        return self._logs.get((namespace, pod_name))

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Current Jobs by name (raw dicts), for assertions."""

        def collect() -> dict[str, dict[str, Any]]:
            assert self._api is not None
            return {
                name: obj.raw
                for (resource, _, name), obj in self._api.objects.items()
                if resource.plural == "jobs" and not obj.deleted
            }

        return self._call(collect)

    # --- the HTTP interception point (runs on the server loop) ------------------------------------

    async def _intercept(self, request: Any) -> aiohttp.web.StreamResponse | None:
        path = request.url.path
        fault = self._take_fault(path)
        if fault is not None:
            headers = {"Retry-After": "1"} if fault.status == 429 else {}
            reason = "TooManyRequests" if fault.status == 429 else "InternalError"
            body = _status_body(fault.status, reason, f"simulated fault on {path}")
            return aiohttp.web.json_response(body, status=fault.status, headers=headers)

        proxied = _SERVICE_PROXY.match(path)
        if proxied is not None:
            return await self._serve_service_proxy(request.method, *proxied.groups())

        resource = request.resource
        plural = getattr(resource, "plural", None)
        if plural == "jobs" and request.method == "POST" and isinstance(request.data, dict):
            meta = request.data.get("metadata") or {}
            self.created_jobs.append(
                CreatedJob(
                    index=len(self.created_jobs),
                    time=time.time(),
                    name=str(meta.get("name")),
                    namespace=str(request.namespace or meta.get("namespace")),
                    manifest=json.loads(json.dumps(request.data)),
                )
            )
        if plural == "pods" and request.subresource == "log" and request.method == "GET":
            return self._serve_log(request.namespace, request.name)
        selector = request.params.get("labelSelector")
        is_list = request.method == "GET" and request.name is None and resource is not None
        if selector and is_list and request.params.get("watch") not in ("true", "1"):
            return await self._serve_selected_list(request, selector)
        return None

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.path_contains is None or fault.path_contains in path):
                    fault.remaining -= 1
                    return fault
            self._faults = [f for f in self._faults if f.remaining > 0]
        return None

    def _serve_log(self, namespace: str, pod: str) -> aiohttp.web.StreamResponse:
        log = self._logs.get((namespace, pod))
        if log is None:
            body = _status_body(404, "NotFound", f'pods "{pod}" not found')
            return aiohttp.web.json_response(body, status=404)
        # The client only accepts pod logs as text/plain (kmock would send str as JSON).
        return aiohttp.web.Response(text=log, content_type="text/plain", charset="utf-8")

    async def _serve_selected_list(self, request: Any, selector: str) -> aiohttp.web.StreamResponse:
        assert self._api is not None
        async with self._api._lock:
            items = [
                obj.raw
                for (resource, namespace, _), obj in self._api.objects.items()
                if resource == request.resource
                and not obj.deleted
                and (request.namespace is None or namespace == request.namespace)
                and _selector_matches(selector, dict((obj.raw.get("metadata") or {}).get("labels") or {}))
            ]
        return aiohttp.web.json_response({"metadata": {"resourceVersion": "1"}, "items": items})

    async def _serve_service_proxy(
        self, method: Any, namespace: str, target: str, rest: str | None
    ) -> aiohttp.web.StreamResponse:
        """The API server's service proxy in front of the simulated workloads: 200 "ok" when the pods
        behind the service are ready, 503 (as the API server says when no endpoint is ready) when not."""
        if method != "GET":
            body = _status_body(405, "MethodNotAllowed", "the simulated service proxy serves GET only")
            return aiohttp.web.json_response(body, status=405)
        parts = target.split(":")  # [scheme:]name[:port]
        service = parts[1] if len(parts) == 3 else parts[0]
        assert self._api is not None
        async with self._api._lock:
            behind = [
                w.ready for w in self._workloads.values() if w.namespace == namespace and service in (w.name, w.release)
            ]
        if not behind:
            body = _status_body(404, "NotFound", f'services "{service}" not found')
            return aiohttp.web.json_response(body, status=404)
        if all(ready > 0 for ready in behind):
            return aiohttp.web.Response(text="ok", content_type="text/plain", charset="utf-8")
        body = _status_body(503, "ServiceUnavailable", f'no endpoints available for service "{service}"')
        return aiohttp.web.json_response(body, status=503)

    # --- the Job controller ----------------------------------------------------------------------

    async def _controller(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            assert self._api is not None
            events: list[tuple[str, dict[str, Any]]] = []
            async with self._api._lock:
                self._reconcile(events)
            for resource, event in events:
                with contextlib.suppress(Exception):  # watchers are best effort here
                    await self._bus_put(resource, event)

    async def _bus_put(self, resource: str, event: dict[str, Any]) -> None:
        from kmock import resource as kmock_resource

        assert self._api is not None
        put: Awaitable[None] = self._api._buses[kmock_resource(resource)].put(event)
        await put

    def _reconcile(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        assert self._api is not None
        now = time.monotonic()
        live: set[tuple[str, str]] = set()
        for (resource, namespace, name), obj in list(self._api.objects.items()):
            if resource.plural != "jobs" or resource.group != "batch" or obj.deleted or namespace is None:
                continue
            key = (namespace, name)
            live.add(key)
            run = self._runs.get(key)
            if run is None:
                run = self._begin(namespace, name, obj.raw, now, events)
            if run.finished or now - run.seen_at < self.job_duration_seconds or self._is_held(run):
                continue
            self._finish(run, events)
        for key in [k for k in self._runs if k not in live]:  # deleted Jobs: forget (a re-create starts anew)
            del self._runs[key]
        for workload in self._workloads.values():
            if not workload.settled and now - workload.changed_at >= self.rollout_seconds:
                workload.settled = True
                events.append((_DEPLOYMENTS, {"type": "MODIFIED", "object": self._write_workload(workload)}))

    def _is_held(self, run: _JobRun) -> bool:
        with self._lock:
            if run.name in self._released:
                return False
            return (
                self._hold_all
                or run.name in self._held_names
                or any(predicate(run.manifest) for predicate in self._hold_predicates)
            )

    def _begin(
        self, namespace: str, name: str, manifest: dict[str, Any], now: float,
        events: list[tuple[str, dict[str, Any]]],
    ) -> _JobRun:  # fmt: skip
        assert self._api is not None
        uid = str(uuid.uuid4())
        pod_name = f"{name[:57]}-{uid[:5]}"
        run = _JobRun(namespace, name, manifest, now, pod_name, uid)
        self._runs[(namespace, name)] = run
        stamp = _now_iso()
        job = self._api.objects[_JOBS, namespace, name]
        job.patch({"metadata": {"uid": uid, "creationTimestamp": stamp, "resourceVersion": "1"},
                   "status": {"active": 1, "ready": 1, "startTime": stamp}})  # fmt: skip
        events.append((_JOBS, {"type": "MODIFIED", "object": job.raw}))
        template = manifest.get("spec", {}).get("template", {})
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels.update({"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": uid})
        containers = template.get("spec", {}).get("containers") or [{"name": "helm", "image": "helm"}]
        self._api.objects[_PODS, namespace, pod_name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": stamp,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],  # fmt: skip
            },
            "spec": template.get("spec") or {"containers": containers},
            "status": {
                "phase": "Running",
                "startTime": stamp,
                "containerStatuses": [
                    self._container_status(c, {"running": {"startedAt": stamp}}, True) for c in containers
                ],  # fmt: skip
            },
        }
        events.append((_PODS, {"type": "ADDED", "object": self._api.objects[_PODS, namespace, pod_name].raw}))
        self._logs[(namespace, pod_name)] = ""
        return run

    @staticmethod
    def _container_status(container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {"name": container.get("name", "helm"), "image": container.get("image", ""), "imageID": "",
                "ready": ready, "restartCount": 0, "started": ready, "state": state}  # fmt: skip

    @staticmethod
    def _customer_keys(run: _JobRun, call: _HelmCall | None) -> set[str]:
        """What names the Job's customer: its id (annotation, label) and its namespace."""
        meta = run.manifest.get("metadata", {})
        ids = {
            (meta.get("annotations") or {}).get(_CUSTOMER_ANNOTATION),
            (meta.get("labels") or {}).get(_CUSTOMER_LABEL),
            (meta.get("labels") or {}).get(_TARGET_NS_LABEL),
            call.namespace if call else None,
        }
        return {i for i in ids if i}

    def _decide(self, run: _JobRun, call: _HelmCall | None) -> Outcome:
        if self.outcome is not None:
            chosen = self.outcome(run.manifest)
            if chosen is not None:
                return chosen
        if self.fail_customers & self._customer_keys(run, call):
            return "fail"
        if self.failure_rate > 0 and self._random.random() < self.failure_rate:
            return "fail"
        return "succeed"

    def _finish(self, run: _JobRun, events: list[tuple[str, dict[str, Any]]]) -> None:
        assert self._api is not None
        call = _parse_helm(run.manifest)
        outcome = self._decide(run, call)
        log, helm_ok = self._play_helm(call, outcome)
        if self.log_text is not None:
            log = self.log_text(run.manifest, log)
        succeeded = outcome == "succeed" and helm_ok
        if succeeded and call is not None:
            self._roll_out(run, call, events)
        run.finished, run.outcome = True, ("succeed" if succeeded else outcome if outcome != "succeed" else "fail")
        stamp = _now_iso()
        if succeeded:
            job_status: dict[str, Any] = {
                "active": None, "ready": 0, "succeeded": 1, "completionTime": stamp,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods",
                     "lastProbeTime": stamp, "lastTransitionTime": stamp},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                     "message": "Reached expected number of succeeded pods",
                     "lastProbeTime": stamp, "lastTransitionTime": stamp},
                ],
            }  # fmt: skip
            terminated = {"exitCode": 0, "reason": "Completed", "finishedAt": stamp}
            pod_patch: dict[str, Any] = {"phase": "Succeeded"}
        else:
            deadline = run.outcome == "timeout"
            reason = "DeadlineExceeded" if deadline else "BackoffLimitExceeded"
            message = ("Job was active longer than specified deadline" if deadline
                       else "Job has reached the specified backoff limit")  # fmt: skip
            job_status = {
                "active": None, "ready": 0, "failed": 1,
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": reason, "message": message,
                     "lastProbeTime": stamp, "lastTransitionTime": stamp},
                    {"type": "Failed", "status": "True", "reason": reason, "message": message,
                     "lastProbeTime": stamp, "lastTransitionTime": stamp},
                ],
            }  # fmt: skip
            terminated = {"exitCode": 137 if deadline else 1, "reason": "Error", "finishedAt": stamp}
            pod_patch = {"phase": "Failed"}
            if deadline:
                pod_patch.update(
                    reason="DeadlineExceeded", message="Pod was active on the node longer than the specified deadline"
                )
        job = self._api.objects[_JOBS, run.namespace, run.name]
        job.patch({"status": job_status})
        events.append((_JOBS, {"type": "MODIFIED", "object": job.raw}))
        # NB: `key in kmock.objects` only matches pre-parsed resource keys; indexing parses strings.
        try:
            pod = self._api.objects[_PODS, run.namespace, run.pod_name]
        except KeyError:
            pod = None
        if pod is not None and not pod.deleted:
            containers = (pod.raw.get("spec") or {}).get("containers") or [{"name": "helm"}]
            pod_patch["containerStatuses"] = [
                self._container_status(c, {"terminated": dict(terminated)}, False) for c in containers
            ]
            pod.patch({"status": pod_patch})
            events.append((_PODS, {"type": "MODIFIED", "object": pod.raw}))
        self._logs[(run.namespace, run.pod_name)] = log

    # --- workloads, simulated ---------------------------------------------------------------------

    def _roll_out(self, run: _JobRun, call: _HelmCall, events: list[tuple[str, dict[str, Any]]]) -> None:
        """A successful helm Job changed the release: roll the component's Deployment out again."""
        labels = run.manifest.get("metadata", {}).get("labels") or {}
        component = labels.get(_COMPONENT_LABEL)
        if not component:  # a Job not built by our gateway: guess from `--set-string <component>.image.tag=`
            component = next((k.split(".", 1)[0] for k in call.set_values if k.endswith(".image.tag")), None)
        if call.operation == "upgrade":
            healthy = not (self.unhealthy_customers & self._customer_keys(run, call))
            components = [component] if component else []
        else:  # rollback / recover: the previous (healthy) version comes back
            healthy = True
            release = (call.namespace, call.release)
            others = [w.component for w in self._workloads.values() if (w.namespace, w.release) == release]
            components = [component] if component else sorted(others)
        now = time.monotonic()
        for name in components:
            raw = self._change_workload(call.namespace, call.release, name, healthy=healthy, now=now, settle=False)
            events.append((_DEPLOYMENTS, {"type": "MODIFIED", "object": raw}))

    def _change_workload(
        self, namespace: str, release: str, component: str, *, healthy: bool, now: float, settle: bool
    ) -> dict[str, Any]:
        """A new generation of the Deployment (a helm upgrade/rollback changed its pod template)."""
        key = (namespace, f"{release}-{component}")
        workload = self._workloads.get(key)
        if workload is None:
            workload = _Workload(namespace, release, component, uid=str(uuid.uuid4()), created=_now_iso())
            self._workloads[key] = workload
        history = self._release_history(namespace, release)
        tag = (history[-1][2] if history else {}).get(f"{component}.image.tag", "initial")
        workload.image = f"registry.example.com/{component}:{tag}"
        workload.generation += 1
        workload.healthy = healthy
        workload.changed_at = now
        workload.ready_before = workload.ready
        workload.settled = settle or self.rollout_seconds <= 0
        return self._write_workload(workload)

    def _write_workload(self, w: _Workload) -> dict[str, Any]:
        """Store the Deployment with the status its rollout has reached; return the raw object."""
        assert self._api is not None
        stamp = _now_iso()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": stamp, "lastTransitionTime": stamp}  # fmt: skip

        replicas, replica_set = WORKLOAD_REPLICAS, f"{w.name}-{w.generation:08x}"
        if w.healthy and w.settled:
            observed, updated, ready = w.generation, replicas, replicas
            progressing = condition("Progressing", "True", "NewReplicaSetAvailable",
                                    f'ReplicaSet "{replica_set}" has successfully progressed.')  # fmt: skip
        elif w.healthy:  # not yet observed: the old pods keep serving
            observed, updated, ready = w.generation - 1, 0, w.ready_before
            progressing = condition("Progressing", "True", "ReplicaSetUpdated",
                                    f'ReplicaSet "{replica_set}" is progressing.')  # fmt: skip
        else:  # the new pods never get ready
            observed, updated, ready = w.generation, replicas, 0
            if w.settled and self.stuck_rollout_fails:
                progressing = condition("Progressing", "False", "ProgressDeadlineExceeded",
                                        f'ReplicaSet "{replica_set}" has timed out progressing.')  # fmt: skip
            else:
                progressing = condition("Progressing", "True", "ReplicaSetUpdated",
                                        f'ReplicaSet "{replica_set}" is progressing.')  # fmt: skip
        available = (
            condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if ready > 0
            else condition(
                "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
            )  # fmt: skip
        )
        w.ready = ready
        selector = {_INSTANCE: w.release, _APP_COMPONENT: w.component}
        status: dict[str, Any] = {
            "observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
            "readyReplicas": ready, "availableReplicas": ready, "conditions": [available, progressing],
        }  # fmt: skip
        if ready < replicas:
            status["unavailableReplicas"] = replicas - ready
        raw = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": w.name,
                "namespace": w.namespace,
                "uid": w.uid,
                "generation": w.generation,
                "creationTimestamp": w.created,
                "labels": {**selector, "app.kubernetes.io/name": w.component, "app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "deployment.kubernetes.io/revision": str(w.generation),
                    "meta.helm.sh/release-name": w.release,
                    "meta.helm.sh/release-namespace": w.namespace,
                },
            },
            "spec": {
                "replicas": replicas,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": dict(selector)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": dict(selector)},
                    "spec": {
                        "containers": [
                            {"name": w.component, "image": w.image, "ports": [{"name": "http", "containerPort": 8080}]}
                        ]
                    },  # fmt: skip
                },
            },
            "status": status,
        }
        self._api.objects[_DEPLOYMENTS, w.namespace, w.name] = raw
        return raw

    # --- Helm, simulated -------------------------------------------------------------------------

    def _play_helm(self, call: _HelmCall | None, outcome: Outcome) -> tuple[str, bool]:
        """Apply the helm operation to the release Secrets; return (helm output, helm exited 0)."""
        if call is None:
            return ("simulated pod: not a helm upgrade/rollback command\n", outcome == "succeed")
        ns, rel = call.namespace, call.release
        history = self._release_history(ns, rel)
        if not history and call.operation == "upgrade" and self.auto_create_releases:
            self._put_release_secret(ns, rel, 1, "deployed", {})
            history = self._release_history(ns, rel)
        if not history:
            if call.operation == "upgrade":
                return (f'Error: UPGRADE FAILED: "{rel}" has no deployed releases\n', False)
            return ("Error: release: not found\n", False)
        current, current_status, current_values = history[-1]
        if call.operation == "upgrade" and current_status.startswith("pending-"):
            return ("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n",
                    False)  # fmt: skip
        new = current + 1
        stamp = dt.datetime.now(tz=dt.UTC).strftime("%a %b %d %H:%M:%S %Y")
        if call.operation == "upgrade":
            values = {**current_values, **call.set_values}
            if outcome == "timeout":  # killed mid-run: helm never gets to record the result
                self._put_release_secret(ns, rel, new, "pending-upgrade", values)
                return (f'Release "{rel}" upgrading...\nwaiting for resources to become ready\n', False)
            if outcome == "fail":  # --atomic: the failed revision stays, a rollback revision follows
                self._supersede(ns, rel, history)
                self._put_release_secret(ns, rel, new, "failed", values)
                self._put_release_secret(ns, rel, new + 1, "deployed", current_values)
                return (
                    f"Error: UPGRADE FAILED: release {rel} failed, and has been rolled back due to atomic "
                    f"being set: context deadline exceeded\n",
                    False,
                )
            self._supersede(ns, rel, history)
            self._put_release_secret(ns, rel, new, "deployed", values)
            return (
                f'Release "{rel}" has been upgraded. Happy Helming!\nNAME: {rel}\nLAST DEPLOYED: {stamp}\n'
                f"NAMESPACE: {ns}\nSTATUS: deployed\nREVISION: {new}\nTEST SUITE: None\n",
                True,
            )
        target = call.revision if call.revision else current - 1
        by_number = {number: values for number, _, values in history}
        if target not in by_number:
            return (f"Error: release has no {target} version\n", False)
        if outcome == "timeout":
            self._put_release_secret(ns, rel, new, "pending-rollback", by_number[target])
            return ("waiting for resources to become ready\n", False)
        if outcome == "fail":
            self._put_release_secret(ns, rel, new, "failed", by_number[target])
            return ("Error: timed out waiting for the condition\n", False)
        self._supersede(ns, rel, history)
        self._put_release_secret(ns, rel, new, "deployed", by_number[target])
        return ("Rollback was a success! Happy Helming!\n", True)

    def _supersede(self, ns: str, rel: str, history: list[tuple[int, str, dict[str, str]]]) -> None:
        for number, status, values in history:
            if status == "deployed" or status.startswith("pending-"):
                self._put_release_secret(ns, rel, number, "superseded", values)

    def _release_history(self, namespace: str, release: str) -> list[tuple[int, str, dict[str, str]]]:
        assert self._api is not None
        found: list[tuple[int, str, dict[str, str]]] = []
        prefix = f"sh.helm.release.v1.{release}.v"
        for (resource, ns, name), obj in self._api.objects.items():
            if resource.plural != "secrets" or ns != namespace or obj.deleted or not name.startswith(prefix):
                continue
            labels = (obj.raw.get("metadata") or {}).get("labels") or {}
            try:
                decoded = json.loads(base64.b64decode(obj.raw.get("data", {}).get("release", "")) or b"{}")
            except ValueError:
                decoded = {}
            found.append((int(labels.get("version", 0)), labels.get("status", ""), decoded.get("values", {})))
        return sorted(found, key=lambda item: item[0])

    def _put_release_secret(
        self, namespace: str, release: str, number: int, status: str, values: dict[str, str]
    ) -> None:
        assert self._api is not None
        name = f"sh.helm.release.v1.{release}.v{number}"
        # Real Helm stores base64(gzip(json)); the simulation keeps base64(json) of what it needs.
        payload = json.dumps({"name": release, "namespace": namespace, "version": number,
                              "info": {"status": status}, "values": values})  # fmt: skip
        self._api.objects[_SECRETS, namespace, name] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "helm.sh/release.v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "owner": "helm",
                    "name": release,
                    "status": status,
                    "version": str(number),
                    "modifiedAt": str(int(time.time())),
                },  # fmt: skip
            },
            "data": {"release": base64.b64encode(payload.encode()).decode()},
        }

    def _delete_release_secrets(self, namespace: str, release: str) -> None:
        assert self._api is not None
        prefix = f"sh.helm.release.v1.{release}.v"
        for key in [k for k in self._api.objects if k[0].plural == "secrets" and k[1] == namespace
                    and k[2].startswith(prefix)]:  # fmt: skip
            del self._api.objects[key]
