"""SimulatedCluster: the fake Kubernetes API server, Job controller and helm, behind one object.

Its own API server (`upgradectl.local.simcluster.server`) serves a real HTTP API on 127.0.0.1 from
an indexed object store (`store`: O(1) work per request, labelSelector / fieldSelector, pagination,
watches), so the official client, kubectl-style discovery and the real helm binary (for reads) run
unchanged against it. RBAC is enforced (`rbac`: k8s/rbac loaded as objects, the per-customer
bindings applied to every customer namespace the simulation onboards). Behind it: the Job/pod
lifecycle (`jobs`), helm itself (`helm`: Helm's storage format, lock, values, --wait/--atomic,
rollback, run as the Job's service account), the component workloads and the service proxy in
front of them, fault injection (`faults`: in front of the API server; `kubelet_unreachable`: behind
it, pod logs the API server cannot fetch) and the accounting tests assert invariants with.

    with SimulatedCluster(fail_customers={"c-2"}) as cluster:
        configuration = kubernetes.client.Configuration(host=cluster.url)
        configuration.api_key = {"authorization": "Bearer " + cluster.jobs_token}  # the product's jobs identity
        ...

Identities: ``jobs_token`` (also written to ``jobs_token_file``, what the product reads through
``KUBE_TOKEN_FILE``) is the product's jobs identity (group ``customer-upgrades:jobs``: start, check,
reconcile); ``reader_token`` (``reader_token_file``, ``KUBE_READER_TOKEN_FILE``) its reader identity (group
``customer-upgrades:reader``: sync, rollout checks); ``runner_token`` is helm's service account; `token_for` mints others. No token, or an unknown one, is
cluster-admin (operators' kubectl, the real helm with ``--kube-token x``, test set-up).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp.web

from upgradectl.local.simcluster.charts import ChartCatalog, ChartVersion
from upgradectl.local.simcluster.faults import Fault, FaultBook, Outage
from upgradectl.local.simcluster.helm import Outcome, seed_description, seed_release
from upgradectl.local.simcluster.jobs import JOBS, PODS, JobController, JobRun, PendingRule, UnstartedRule
from upgradectl.local.simcluster.rbac import (
    JOBS_USER,
    NAMESPACES,
    RBAC_DIR,
    READER_USER,
    RUNNER_USER,
    Attributes,
    Authorizer,
    Identities,
    RbacManifests,
    User,
    apply_documents,
)
from upgradectl.local.simcluster.releases import PENDING, SECRETS, ReleaseStore, status_of
from upgradectl.local.simcluster.selectors import LabelSelector, Requirement
from upgradectl.local.simcluster.server import ApiServer, Hooks, ProtobufWrite, RequestInfo, error_response
from upgradectl.local.simcluster.store import ObjectStore, StoreError
from upgradectl.local.simcluster.values import flatten
from upgradectl.local.simcluster.workloads import DEPLOYMENTS, Workloads

OutcomeFn = Callable[[dict[str, Any]], "Outcome | None"]
_ALL = LabelSelector(())
HoldTarget = str | Callable[[dict[str, Any]], bool] | None
History = list[tuple[int, str, dict[str, Any]]]


@dataclass(frozen=True)
class CreatedJob:
    """One Job create request the API server processed (duplicates included; not faults, not 403s)."""

    index: int
    time: float  # time.time() when the API server answered it
    name: str
    namespace: str
    manifest: dict[str, Any]
    status: int = 201  # 201 created, 409 AlreadyExists (a retried create), 4xx invalid
    user: str = ""


@dataclass(frozen=True)
class JobCreateRequest:
    """Every Job create request that reached the API server, with the status it was answered."""

    index: int
    time: float
    name: str
    namespace: str
    status: int  # 201, 409, 403 (RBAC), or an injected fault's status
    user: str  # "" when a fault answered before authentication


class SimulatedCluster:
    """In-process fake Kubernetes API + Job controller + Helm 3.

    Outcome of a helm Job, first match wins: helm itself refuses (chart version unknown, release
    missing, Helm's lock: the newest revision is pending-*, RBAC: a request of its service account
    forbidden) -> fail; ``outcome(manifest)`` returning "succeed" / "fail" / "timeout"; customer id
    (or namespace) in ``fail_customers`` -> fail; ``failure_rate`` (seeded) -> fail; else succeed.
    "fail" is an error applying the manifest (``--atomic`` then rolls back); "timeout" plays a Job
    killed by its deadline while helm works, leaving the release stuck in pending-*.

    Time: helm works for ``job_duration_seconds`` after its pod starts (the new revision is pending
    all along); ``--wait`` then waits for every workload of the release to be ready, at most
    ``wait_timeout_seconds`` (None: helm's own ``--timeout`` times ``time_scale``); the Job's
    ``activeDeadlineSeconds`` times ``time_scale`` is enforced. Pods may sit Pending first
    (``pending_seconds``, ``pending_when``); a Job may not be started at all yet (``unstarted_when``:
    no startTime, no pod, until the rule lets it go).

    Workloads: a release has one Deployment ``<release>-<component>`` per component. A helm run that
    changes a component's image rolls it out again (ready ``rollout_seconds`` later). An upgrade of a
    customer (id or namespace) in ``unhealthy_customers`` brings images whose pods never become ready
    there: ``--wait`` fails after its timeout and ``--atomic`` restores the previous revision. For one
    in ``probe_unhealthy_customers`` the pods get ready (helm succeeds) but the service proxy answers
    503 for the new version: a post-upgrade HTTP health check fails after helm succeeded.

    RBAC (``rbac``; ``rbac_dir``: where the manifests are, default k8s/rbac): a customer namespace is
    onboarded (Namespace object + the template's RoleBindings) by `onboard`, by `add_release` and when
    a helm Job meets a release that ``auto_create_releases`` installs. Namespaces never onboarded give
    neither identity any right, as in a cluster where onboarding forgot a step.
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
        unstarted_when: UnstartedRule | None = None,
        rbac: bool = True,
        rbac_dir: Path | None = None,
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
        # manifest -> True: the Job controller has not started that Job yet (kube-controller-manager down
        # or behind): it has no status (no startTime, no active pod) and no pod; asked again on every tick.
        self.unstarted_when = unstarted_when
        self.rbac = rbac
        self.rbac_dir = rbac_dir or RBAC_DIR
        self.created_jobs: list[CreatedJob] = []
        self.job_create_requests: list[JobCreateRequest] = []
        self._random = random.Random(seed)  # noqa: S311 - simulation, not security
        self._faults = FaultBook()
        self._kubelet_faults = FaultBook()  # pods/log answered by the API server without the kubelet
        self._identities = Identities()
        self.jobs_token = self._identities.mint(JOBS_USER)
        self.reader_token = self._identities.mint(READER_USER)
        self.runner_token = self._identities.mint(RUNNER_USER)
        self._token_dir: Path | None = None
        self._hold_all = False
        self._held_names: set[str] = set()
        self._hold_predicates: list[Callable[[dict[str, Any]], bool]] = []
        self._released: set[str] = set()
        self._logs: dict[tuple[str, str], str] = {}
        self._objects: ObjectStore | None = None
        self._manifests: RbacManifests | None = None
        self._authorizer: Authorizer | None = None
        self._onboarded: set[str] = set()
        self._server: ApiServer | None = None
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

    @property
    def jobs_token_file(self) -> Path:
        """A file holding the jobs identity's bearer token (like a projected service-account token): what
        the product reads through KUBE_TOKEN_FILE. Exists while the cluster runs."""
        return self._token_path("jobs.token")

    @property
    def reader_token_file(self) -> Path:
        """A file holding the reader identity's bearer token: what the product's reading adapters (sync,
        rollout checks) read through KUBE_READER_TOKEN_FILE. Exists while the cluster runs."""
        return self._token_path("reader.token")

    def _token_path(self, name: str) -> Path:
        if self._token_dir is None:
            raise RuntimeError("the simulated cluster is not running")
        return self._token_dir / name

    def start(self) -> SimulatedCluster:
        if self._thread is not None:
            raise RuntimeError("a SimulatedCluster starts once")
        self._token_dir = Path(tempfile.mkdtemp(prefix="simcluster-tokens-"))
        for name, token in (("jobs.token", self.jobs_token), ("reader.token", self.reader_token)):
            descriptor = os.open(self._token_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(token)
        self._thread = threading.Thread(target=self._run, name="simulated-cluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the simulated cluster did not start within 30 s")
        if self._startup_error is not None:
            self._thread.join(timeout=5)
            self._remove_tokens()
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
        self._remove_tokens()

    def _remove_tokens(self) -> None:
        if self._token_dir is not None:
            shutil.rmtree(self._token_dir, ignore_errors=True)
            self._token_dir = None

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
        objects = self._objects = ObjectStore()
        self._manifests = RbacManifests(self.rbac_dir)
        apply_documents(objects, self._manifests.cluster_documents)
        self._authorizer = Authorizer(objects, enabled=self.rbac)
        self._store = ReleaseStore(objects)
        self._workloads = Workloads(objects, self)
        self._jobs = JobController(
            objects, self, releases=self._store, workloads=self._workloads, catalog=self.charts, logs=self._logs,
            is_held=self._is_held, decide=self._decide, authorize=self._authorize, onboard=self._onboard,
        )  # fmt: skip
        hooks = Hooks(pod_log=self._serve_log, service_proxy=self._serve_service_proxy, observers=[self._observe])
        server = self._server = ApiServer(objects, self._authorizer, self._identities, self._faults, hooks)
        port = await server.listen("127.0.0.1")
        self._url = f"http://127.0.0.1:{port}"
        controller = asyncio.create_task(self._controller())
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            controller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await controller
            await server.close()

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (where every store write happens) and return its result."""
        if self._loop is None or self._objects is None or not self.running:
            raise RuntimeError("start the simulated cluster first")

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    # --- identities and RBAC ---------------------------------------------------------------------

    def token_for(self, user: str, groups: Iterable[str] = ()) -> str:
        """A bearer token for any identity (a test's own user or group)."""
        return self._identities.mint(User(user, (*groups, "system:authenticated")))

    def onboard(self, namespace: str) -> None:
        """A customer namespace as onboarding leaves it: the Namespace and the template's RoleBindings."""
        self._call(lambda: self._onboard(namespace))

    def _onboard(self, namespace: str) -> None:
        assert self._objects is not None and self._manifests is not None
        if namespace in self._onboarded:
            return
        if self._objects.get(NAMESPACES, "", namespace) is None:
            self._objects.put(NAMESPACES, {"metadata": {"name": namespace}, "spec": {"finalizers": ["kubernetes"]},
                                           "status": {"phase": "Active"}})  # fmt: skip
        apply_documents(self._objects, self._manifests.for_namespace(namespace))
        self._onboarded.add(namespace)

    def _authorize(self, user: User, verb: str, group: str, resource: str, namespace: str, name: str) -> str | None:
        """The simulated helm's own requests, authorized as the API server would (message when denied)."""
        assert self._authorizer is not None
        denied = self._authorizer.check(Attributes(user, verb, namespace, group, resource, "", name))
        return denied.message if denied is not None else None

    def can(self, token: str | None, verb: str, resource: str, namespace: str = "", *, group: str = "",
            subresource: str = "", name: str = "") -> bool:  # fmt: skip
        """Would the API server allow this request of the identity `token` names? (kubectl auth can-i)"""
        user = self._identities.authenticate(f"Bearer {token}" if token else None)
        attrs = Attributes(user, verb, namespace, group, resource, subresource, name)
        return bool(self._call(lambda: self._authorizer is not None and self._authorizer.allowed(attrs)))

    # --- faults ----------------------------------------------------------------------------------

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

    # --- accounting ------------------------------------------------------------------------------

    def _observe(self, info: RequestInfo, user: User | None, body: Any, status: int) -> None:
        if info.kind is None or info.kind.key != JOBS or info.verb != "create" or info.subresource:
            return
        meta = (body.get("metadata") if isinstance(body, dict) else None) or {}
        name, namespace, now = str(meta.get("name")), str(info.namespace or meta.get("namespace")), time.time()
        self.job_create_requests.append(JobCreateRequest(
            len(self.job_create_requests), now, name, namespace, status, user.name if user else ""))  # fmt: skip
        if user is not None and status != 403:
            self.created_jobs.append(CreatedJob(len(self.created_jobs), now, name, namespace,
                                                json.loads(json.dumps(body)), status, user.name))  # fmt: skip

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

    # --- test controls ---------------------------------------------------------------------------

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

    # --- what the API server lets the simulation answer (runs on the server loop) ------------------

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

    # --- the controller loop ----------------------------------------------------------------------

    async def _controller(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            assert self._jobs is not None
            self._jobs.reconcile(time.monotonic())

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


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied
