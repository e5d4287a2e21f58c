"""SimulatedCluster: the fake Kubernetes API server, Job controller and helm, behind one object.

kmock's ``KubernetesEmulator`` serves a real HTTP API on 127.0.0.1, so the official client (and the
real helm binary, for reads) run unchanged against it. This adds what kmock does not do: pod logs as
text/plain, ``labelSelector`` on LIST (equality terms), real discovery documents, fault injection,
the Job/pod lifecycle, helm itself (`upgradectl.local.simcluster.helm`: Helm's storage format, lock,
values, --wait/--atomic, rollback), the component workloads and the service proxy in front of them.
Watches see client writes and the simulation's own changes (best effort).

    with SimulatedCluster(fail_customers={"c-2"}) as cluster:
        api_client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp.web
from kmock import ResourceInfo, Server
from kmock import resource as kmock_resource

from upgradectl.local.simcluster.charts import ChartCatalog, ChartVersion
from upgradectl.local.simcluster.helm import Outcome, seed_description, seed_release
from upgradectl.local.simcluster.jobs import JOBS, PODS, JobController, JobRun, PendingRule
from upgradectl.local.simcluster.releases import PENDING, SECRETS, ReleaseStore, status_of
from upgradectl.local.simcluster.server import ApiServer, ProtobufWrite, discovery_document, selector_matches
from upgradectl.local.simcluster.server import status_body as _status_body
from upgradectl.local.simcluster.values import flatten
from upgradectl.local.simcluster.workloads import DEPLOYMENTS, Workloads

OutcomeFn = Callable[[dict[str, Any]], "Outcome | None"]
HoldTarget = str | Callable[[dict[str, Any]], bool] | None
History = list[tuple[int, str, dict[str, Any]]]

_DECLARED = {
    JOBS: ResourceInfo(kind="Job", singular="job", namespaced=True),
    PODS: ResourceInfo(kind="Pod", singular="pod", namespaced=True, subresources={"log"}),
    SECRETS: ResourceInfo(kind="Secret", singular="secret", namespaced=True),
    "v1/namespaces": ResourceInfo(kind="Namespace", singular="namespace", namespaced=False),
    DEPLOYMENTS: ResourceInfo(kind="Deployment", singular="deployment", namespaced=True),
    "apps/v1/statefulsets": ResourceInfo(kind="StatefulSet", singular="statefulset", namespaced=True),
}
# GET /api/v1/namespaces/<ns>/services/[<scheme>:]<name>[:<port>]/proxy[/<path>] (path %-decoded)
_SERVICE_PROXY = re.compile(r"^/api/v1/namespaces/([^/]+)/services/([^/]+)/proxy(?:/(.*))?$")
_DISCOVERY = re.compile(r"^/(version|api|apis|api/v1|apis/[^/]+/[^/]+)/?$")


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


class SimulatedCluster:
    """In-process fake Kubernetes API + Job controller + Helm 3.

    Outcome of a helm Job, first match wins: helm itself refuses (chart version unknown, release
    missing, Helm's lock: the newest revision is pending-*) -> fail; ``outcome(manifest)`` returning
    "succeed" / "fail" / "timeout"; customer id (or namespace) in ``fail_customers`` -> fail;
    ``failure_rate`` (seeded) -> fail; else succeed. "fail" is an error applying the manifest
    (``--atomic`` then rolls back); "timeout" plays a Job killed by its deadline while helm works,
    leaving the release stuck in pending-*.

    Time: helm works for ``job_duration_seconds`` after its pod starts (the new revision is pending
    all along); ``--wait`` then waits for every workload of the release to be ready, at most
    ``wait_timeout_seconds`` (None: helm's own ``--timeout`` times ``time_scale``); the Job's
    ``activeDeadlineSeconds`` times ``time_scale`` is enforced. Pods may sit Pending first
    (``pending_seconds``, ``pending_when``).

    Workloads: a release has one Deployment ``<release>-<component>`` per component. A helm run that
    changes a component's image rolls it out again (ready ``rollout_seconds`` later). An upgrade of a
    customer (id or namespace) in ``unhealthy_customers`` brings images whose pods never become ready
    there: ``--wait`` fails after its timeout and ``--atomic`` restores the previous revision. For one
    in ``probe_unhealthy_customers`` the pods get ready (helm succeeds) but the service proxy answers
    503 for the new version: a post-upgrade HTTP health check fails after helm succeeded.
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
        probe_unhealthy_customers: Iterable[str] = (),
        charts: Iterable[ChartVersion] | None = None,
        wait_timeout_seconds: float | None = 0.5,
        time_scale: float = 1.0,
        pending_seconds: float = 0.0,
        pending_when: PendingRule | None = None,
    ) -> None:
        self.job_duration_seconds = job_duration_seconds
        self.failure_rate = failure_rate
        self.fail_customers: set[str] = set(fail_customers)
        self.outcome = outcome
        # helm upgrade (without --install) fails on a missing release; by default the release is
        # installed (revision 1, the newest chart) when a helm Job first meets it, so a local stack
        # works without seeding every customer.
        self.auto_create_releases = auto_create_releases
        # Replaces the helm output a Job's pod logs: (job manifest, helm's text) -> text.
        self.log_text = log_text
        self.poll_interval = poll_interval
        # How long a changed Deployment takes to become ready (or, unhealthy, to pass its deadline).
        self.rollout_seconds = rollout_seconds
        self.unhealthy_customers: set[str] = set(unhealthy_customers)
        self.stuck_rollout_fails = stuck_rollout_fails
        self.probe_unhealthy_customers: set[str] = set(probe_unhealthy_customers)
        self.charts = ChartCatalog(charts)
        self.wait_timeout_seconds = wait_timeout_seconds
        self.time_scale = time_scale
        self.pending_seconds = pending_seconds
        # manifest -> a waiting reason ("ImagePullBackOff", "ErrImagePull", "Unschedulable") or True
        # ("ContainerCreating") to keep that Job's pod Pending; asked again on every tick.
        self.pending_when = pending_when
        self.created_jobs: list[CreatedJob] = []
        self._random = random.Random(seed)  # noqa: S311 - simulation, not security
        self._faults: list[_Fault] = []
        self._hold_all = False
        self._held_names: set[str] = set()
        self._hold_predicates: list[Callable[[dict[str, Any]], bool]] = []
        self._released: set[str] = set()
        self._logs: dict[tuple[str, str], str] = {}
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._api: ApiServer | None = None
        self._store: ReleaseStore | None = None
        self._workloads: Workloads | None = None
        self._jobs: JobController | None = None
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
        api = ApiServer(intercept=self._intercept)
        for resource, info in _DECLARED.items():  # LIST of a kind with no objects yet must answer 200
            api.resources[resource] = info
        self._api = api
        self._store = ReleaseStore(api, self._emit)
        self._workloads = Workloads(api, self)
        self._jobs = JobController(
            api, self, store=self._store, workloads=self._workloads, catalog=self.charts, logs=self._logs,
            emit=self._emit, is_held=self._is_held, decide=self._decide,
        )  # fmt: skip
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

    def _emit(self, resource: str, event: dict[str, Any]) -> None:
        """Queue a watch event (sent by the controller loop, outside the lock)."""
        self._events.append((resource, json.loads(json.dumps(event))))

    # --- test controls ---------------------------------------------------------------------------

    def fail_next(self, n: int = 1, *, status: int = 500, path_contains: str | None = None) -> None:
        """Answer the next `n` requests (whose path contains `path_contains`) with HTTP `status`."""
        with self._lock:
            self._faults.append(_Fault(remaining=n, status=status, path_contains=path_contains))

    def hold(self, target: HoldTarget = None) -> None:
        """Keep Jobs running until `release`: all (None), one Job name, or those a predicate picks.
        A held helm has started (its pending-* revision is written) and does not go on."""
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
    ) -> None:
        """Seed a Helm release in Helm's storage format: revisions 1..revision installed from the chart
        version (None: the newest) with `values` (dotted keys like ``{"api.image.tag": "v1.1.0"}`` or
        nested maps; stored nested in ``config``). The newest revision is in `status`; the one before a
        pending-* or failed revision stays deployed (as Helm leaves it), earlier ones are superseded.
        Each component gets a ready Deployment running the release's image."""

        def apply() -> None:
            assert self._store is not None and self._workloads is not None
            seed_release(
                self._store, self._workloads, self.charts, namespace=namespace, release=release, status=status,
                revision=revision, values=values, chart_version=chart_version, chart_name=chart_name,
                now=time.monotonic(),
            )  # fmt: skip

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
            raw = self._workloads.set_health(namespace, release, component, healthy, now=time.monotonic())
            self._emit(DEPLOYMENTS, {"type": "MODIFIED", "object": raw})

        self._call(apply)

    def workload(self, namespace: str, release: str, component: str) -> dict[str, Any] | None:
        """The simulated Deployment `<release>-<component>` (raw dict) or None, for assertions."""

        def read() -> dict[str, Any] | None:
            assert self._api is not None and self._workloads is not None
            if self._workloads.get(namespace, release, component) is None:
                return None
            obj = self._api.objects[DEPLOYMENTS, namespace, f"{release}-{component}"]
            return None if obj.deleted else json.loads(json.dumps(obj.raw))

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
            assert self._api is not None
            return {
                name: obj.raw
                for (resource, _, name), obj in self._api.objects.items()
                if resource.plural == "jobs" and not obj.deleted
            }

        return self._call(collect)

    def pods(self, job_name: str | None = None) -> dict[str, dict[str, Any]]:
        """Current pods by name (raw dicts; only those of one Job when given), for assertions."""

        def collect() -> dict[str, dict[str, Any]]:
            assert self._api is not None
            return {
                name: json.loads(json.dumps(obj.raw))
                for (resource, _, name), obj in self._api.objects.items()
                if resource.plural == "pods" and not obj.deleted
                and (job_name is None or (obj.raw.get("metadata") or {}).get("labels", {}).get("job-name") == job_name)
            }  # fmt: skip

        return self._call(collect)

    @property
    def protobuf_writes(self) -> list[ProtobufWrite]:
        """Writes refused because they came as protobuf (client-go's default, e.g. a real helm's)."""
        return list(self._api.protobuf_writes) if self._api is not None else []

    # --- the HTTP interception point (runs on the server loop) ------------------------------------

    async def _intercept(self, request: Any) -> aiohttp.web.StreamResponse | None:
        path = request.url.path
        fault = self._take_fault(path)
        if fault is not None:
            headers = {"Retry-After": "1"} if fault.status == 429 else {}
            reason = "TooManyRequests" if fault.status == 429 else "InternalError"
            body = _status_body(fault.status, reason, f"simulated fault on {path}")
            return aiohttp.web.json_response(body, status=fault.status, headers=headers)

        if request.method == "GET" and _DISCOVERY.match(path):
            document = discovery_document(path)
            if document is not None:
                return aiohttp.web.json_response(document)

        proxied = _SERVICE_PROXY.match(path)
        if proxied is not None:
            return await self._serve_service_proxy(request.method, *proxied.groups())

        resource = request.resource
        plural = getattr(resource, "plural", None)
        if plural == "jobs" and request.method == "POST" and isinstance(request.data, dict):
            meta = request.data.get("metadata") or {}
            if self._jobs is not None and meta.get("name"):
                self._jobs.created(str(request.namespace or meta.get("namespace")), str(meta["name"]))
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
                and selector_matches(selector, dict((obj.raw.get("metadata") or {}).get("labels") or {}))
            ]
        return aiohttp.web.json_response({"metadata": {"resourceVersion": "1"}, "items": items})

    async def _serve_service_proxy(
        self, method: Any, namespace: str, target: str, rest: str | None
    ) -> aiohttp.web.StreamResponse:
        """The API server's service proxy in front of the simulated workloads: 200 "ok" when the pods
        behind the service are ready, 503 "no endpoints available" when not, and the application's
        own 503 when its health path fails (``probe_unhealthy_customers``)."""
        if method != "GET":
            body = _status_body(405, "MethodNotAllowed", "the simulated service proxy serves GET only")
            return aiohttp.web.json_response(body, status=405)
        parts = target.split(":")  # [scheme:]name[:port]
        service = parts[1] if len(parts) == 3 else parts[0]
        assert self._api is not None and self._workloads is not None
        async with self._api._lock:
            answer = self._workloads.proxy_answer(namespace, service)
        if answer is None:
            body = _status_body(404, "NotFound", f'services "{service}" not found')
            return aiohttp.web.json_response(body, status=404)
        status, text = answer
        if status == 200:
            return aiohttp.web.Response(text=text, content_type="text/plain", charset="utf-8")
        if text.startswith("no endpoints"):  # said by the API server itself
            return aiohttp.web.json_response(_status_body(503, "ServiceUnavailable", text), status=503)
        return aiohttp.web.Response(text=text, status=status, content_type="text/plain", charset="utf-8")

    # --- the controller loop ----------------------------------------------------------------------

    async def _controller(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            assert self._api is not None and self._jobs is not None
            async with self._api._lock:
                self._jobs.reconcile(time.monotonic())
                events, self._events = self._events, []
            for resource, event in events:
                with contextlib.suppress(Exception):  # watchers are best effort here
                    await self._api._buses[kmock_resource(resource)].put(event)

    def _is_held(self, run: JobRun) -> bool:
        with self._lock:
            if run.name in self._released:
                return False
            return (
                self._hold_all
                or run.name in self._held_names
                or any(predicate(run.manifest) for predicate in self._hold_predicates)
            )

    def _decide(self, manifest: dict[str, Any], keys: set[str]) -> Outcome:
        if self.outcome is not None:
            chosen = self.outcome(manifest)
            if chosen is not None:
                return chosen
        if self.fail_customers & keys:
            return "fail"
        if self.failure_rate > 0 and self._random.random() < self.failure_rate:
            return "fail"
        return "succeed"


def flatten_values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Nested Helm values as dotted keys: ``{"api": {"image": {"tag": "v1"}}}`` -> ``{"api.image.tag": "v1"}``."""
    return flatten(values)
