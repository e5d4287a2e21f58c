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

from upgradectl.local.simcluster.charts import ChartCatalog, ChartVersion
from upgradectl.local.simcluster.fault_controls import FaultControls
from upgradectl.local.simcluster.faults import FaultBook
from upgradectl.local.simcluster.fleet_controls import FleetControls
from upgradectl.local.simcluster.host import OutcomeFn
from upgradectl.local.simcluster.inspection import Inspection
from upgradectl.local.simcluster.job_controls import JobControls
from upgradectl.local.simcluster.jobs import JOBS, JobController, PendingRule, UnstartedRule
from upgradectl.local.simcluster.rbac import (
    JOBS_USER,
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
from upgradectl.local.simcluster.releases import ReleaseStore
from upgradectl.local.simcluster.request_info import RequestInfo
from upgradectl.local.simcluster.served import Served
from upgradectl.local.simcluster.server import ApiServer, Hooks
from upgradectl.local.simcluster.store import ObjectStore
from upgradectl.local.simcluster.values import flatten
from upgradectl.local.simcluster.workloads import Workloads


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


class SimulatedCluster(FaultControls, FleetControls, JobControls, Inspection, Served):
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
    503 for the new version: a post-upgrade HTTP health check fails after helm succeeded. An image in
    ``probe_broken_images`` (`registry/component:tag`, a broken build) does the same for every customer it
    reaches, and only on its own component.

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
        probe_broken_images: Iterable[str] = (),
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
        self.probe_broken_images: set[str] = set(probe_broken_images)
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

    # --- identities and RBAC ---------------------------------------------------------------------

    def token_for(self, user: str, groups: Iterable[str] = ()) -> str:
        """A bearer token for any identity (a test's own user or group)."""
        return self._identities.mint(User(user, (*groups, "system:authenticated")))

    def onboard(self, namespace: str) -> None:
        """A customer namespace as onboarding leaves it: the Namespace and the template's RoleBindings."""
        self._call(lambda: self._onboard(namespace))

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

    # --- the controller loop ----------------------------------------------------------------------

    async def _controller(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            assert self._jobs is not None
            self._jobs.reconcile(time.monotonic())


def flatten_values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Nested Helm values as dotted keys: ``{"api": {"image": {"tag": "v1"}}}`` -> ``{"api.image.tag": "v1"}``."""
    return flatten(values)
