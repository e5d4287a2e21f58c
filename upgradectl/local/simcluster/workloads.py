"""The component workloads a release runs: one Deployment ``<release>-<component>`` per component (on
the blue-green chart one ``<release>-<component>-<slot>`` per deployed slot; the component's Service
follows the active slot, each slot's preview Service that slot).

A helm upgrade or rollback that changes a component's image starts a new rollout (generation + 1);
it is ready ``rollout_seconds`` later, unless the image is one that never becomes ready for this
customer (``unhealthy_customers``: its pods stay unready, and with ``stuck_rollout_fails`` the
Deployment reports ProgressDeadlineExceeded after ``rollout_seconds``). The service proxy in front
of a component answers 200 "ok" when its pods are ready, the API server's 503 "no endpoints
available" when none is, and the application's own 503 for an image whose health path fails
although its pods are ready (``probe_unhealthy_customers``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from upgradectl.local.simcluster.identity import new_uid
from upgradectl.local.simcluster.store import ObjectStore

DEPLOYMENTS = "apps/v1/deployments"
INSTANCE = "app.kubernetes.io/instance"
APP_COMPONENT = "app.kubernetes.io/component"
SLOT_LABEL = "upgrades.example.com/slot"
ACTIVE_LABEL = "upgrades.example.com/active"
SLOTS = ("blue", "green")
REPLICAS = 2


class RolloutSettings(Protocol):
    rollout_seconds: float
    stuck_rollout_fails: bool


@dataclass
class Workload:
    """The simulated Deployment `<release>-<key>` and where its rollout stands (key: the component, or
    `<component>-<slot>` on the blue-green chart)."""

    namespace: str
    release: str
    key: str
    uid: str
    created: str
    generation: int = 0
    image: str = ""
    healthy: bool = True  # False: the pods of this generation never become ready
    probe_ok: bool = True  # False: ready pods whose health path answers 503
    changed_at: float = 0.0  # time.monotonic() of the last change
    settled: bool = True  # rollout_seconds have passed since the change
    ready: int = 0  # readyReplicas as last written
    ready_before: int = 0  # readyReplicas when the change started (old pods keep serving)
    bad_images: set[str] = field(default_factory=set)  # images that never get ready here
    failing_probe_images: set[str] = field(default_factory=set)  # images whose health path fails here

    active: bool = True  # blue-green: the slot the component's Service selects

    @property
    def component(self) -> str:
        return self.key.split("-", 1)[0]

    @property
    def slot(self) -> str | None:
        _, _, slot = self.key.partition("-")
        return slot if slot in SLOTS else None

    @property
    def name(self) -> str:
        return f"{self.release}-{self.key}"

    @property
    def service(self) -> str:
        """The Service that sends traffic to it: the component's (only the active slot's, on blue-green)."""
        return f"{self.release}-{self.component}"

    @property
    def rolled_out(self) -> bool:
        """What helm --wait waits for: every replica of the current generation ready."""
        return self.healthy and self.settled


def _stamp() -> str:
    return dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Workloads:
    """The Deployments of every release, indexed by release and namespace. Runs on the API server's loop."""

    def __init__(self, objects: ObjectStore, settings: RolloutSettings) -> None:
        self._objects = objects
        self._settings = settings
        self._by_release: dict[tuple[str, str], dict[str, Workload]] = {}
        self._releases_in: dict[str, set[str]] = {}  # namespace -> releases with workloads
        self._unsettled: dict[tuple[str, str, str], Workload] = {}  # rollouts still under way

    def get(self, namespace: str, release: str, component: str) -> Workload | None:
        return (self._by_release.get((namespace, release)) or {}).get(component)

    def of_release(self, namespace: str, release: str) -> list[Workload]:
        return list((self._by_release.get((namespace, release)) or {}).values())

    def forget_namespace(self, namespace: str) -> None:
        """The namespace is gone: its workloads are no longer simulated."""
        for key in [k for k in self._by_release if k[0] == namespace]:
            del self._by_release[key]

    def all(self) -> list[Workload]:
        return [w for workloads in self._by_release.values() for w in workloads.values()]

    def ready_for_helm(self, namespace: str, release: str) -> bool:
        return all(w.rolled_out for w in self.of_release(namespace, release))

    def mark_image(self, namespace: str, release: str, component: str, image: str, *, probe_only: bool) -> None:
        """Remember that `image` never gets ready (or, `probe_only`, fails its health path) here."""
        workload = self._ensure(namespace, release, component)
        (workload.failing_probe_images if probe_only else workload.bad_images).add(image)

    def set_image(
        self, namespace: str, release: str, component: str, image: str, *, now: float, settle: bool = False,
        active: bool = True,
    ) -> dict[str, Any] | None:  # fmt: skip
        """Helm applied a pod template with `image`: a new rollout when it changed (returns the written
        object), nothing when the template is the same (Kubernetes starts no rollout then; a blue-green
        slot whose `active` label changed is written again, same generation)."""
        workload = self._ensure(namespace, release, component)
        if workload.generation > 0 and workload.image == image:
            if workload.active == active:
                return None
            workload.active = active
            return self.write(workload)
        workload.active = active
        workload.image = image
        workload.generation += 1
        workload.healthy = image not in workload.bad_images
        workload.probe_ok = image not in workload.failing_probe_images
        workload.changed_at = now
        workload.ready_before = workload.ready
        workload.settled = settle or self._settings.rollout_seconds <= 0
        self._track(workload)
        return self.write(workload)

    def set_health(self, namespace: str, release: str, component: str, healthy: bool, *, now: float) -> dict[str, Any]:
        """Pods ready (or not) right away, without a new generation; creates the Deployment if needed."""
        workload = self._ensure(namespace, release, component)
        if workload.generation == 0:
            workload.generation, workload.image, workload.changed_at = 1, f"registry.example.com/{component}", now
        workload.healthy, workload.settled = healthy, True
        self._track(workload)
        return self.write(workload)

    def remove_others(self, namespace: str, release: str, keep: set[str]) -> None:
        """Helm deletes what the new manifest no longer has: e.g. a finalized blue-green slot's Deployment."""
        workloads = self._by_release.get((namespace, release)) or {}
        for key in [k for k in workloads if k not in keep]:
            workload = workloads.pop(key)
            self._unsettled.pop((namespace, release, key), None)
            if self._objects.get(DEPLOYMENTS, namespace, workload.name) is not None:
                self._objects.delete(DEPLOYMENTS, namespace, workload.name)

    def _track(self, workload: Workload) -> None:
        key = (workload.namespace, workload.release, workload.key)
        if workload.settled:
            self._unsettled.pop(key, None)
        else:
            self._unsettled[key] = workload

    def settle(self, now: float) -> list[dict[str, Any]]:
        """Rollouts whose rollout_seconds have passed: written again (ready, or past their deadline).
        Looks only at the rollouts under way."""
        changed = []
        for key, workload in list(self._unsettled.items()):
            if now - workload.changed_at >= self._settings.rollout_seconds:
                workload.settled = True
                del self._unsettled[key]
                changed.append(self.write(workload))
        return changed

    def proxy_answer(self, namespace: str, service: str) -> tuple[int, str] | None:
        """(HTTP status, text) of the service proxy for `service`; None when there is no such service."""
        behind = [
            w for release in self._releases_in.get(namespace, ()) for w in self.of_release(namespace, release)
            if service in (w.name, w.release) or (service == w.service and (w.slot is None or w.active))
        ]  # fmt: skip
        if not behind:
            return None
        if any(w.ready <= 0 for w in behind):
            return 503, f'no endpoints available for service "{service}"'
        if any(not w.probe_ok for w in behind):
            return 503, "unhealthy: the application's health check failed"
        return 200, "ok"

    def _ensure(self, namespace: str, release: str, component: str) -> Workload:
        workloads = self._by_release.setdefault((namespace, release), {})
        workload = workloads.get(component)
        if workload is None:
            workload = Workload(namespace, release, component, uid=new_uid(), created=_stamp())  # component: its key
            workloads[component] = workload
            self._releases_in.setdefault(namespace, set()).add(release)
        return workload

    def write(self, w: Workload) -> dict[str, Any]:
        """Store the Deployment with the status its rollout has reached; return the raw object."""
        stamp = _stamp()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": stamp, "lastTransitionTime": stamp}  # fmt: skip

        replica_set = f"{w.name}-{w.generation:08x}"
        if w.healthy and w.settled:
            observed, updated, ready = w.generation, REPLICAS, REPLICAS
            progressing = condition("Progressing", "True", "NewReplicaSetAvailable",
                                    f'ReplicaSet "{replica_set}" has successfully progressed.')  # fmt: skip
        elif w.healthy:  # not yet observed: the old pods keep serving
            observed, updated, ready = w.generation - 1, 0, w.ready_before
            progressing = condition("Progressing", "True", "ReplicaSetUpdated",
                                    f'ReplicaSet "{replica_set}" is progressing.')  # fmt: skip
        else:  # the new pods never get ready
            observed, updated, ready = w.generation, REPLICAS, 0
            if w.settled and self._settings.stuck_rollout_fails:
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
        selector = {INSTANCE: w.release, APP_COMPONENT: w.component}
        if w.slot is not None:
            selector[SLOT_LABEL] = w.slot
        status: dict[str, Any] = {
            "observedGeneration": observed, "replicas": REPLICAS, "updatedReplicas": updated,
            "readyReplicas": ready, "availableReplicas": ready, "conditions": [available, progressing],
        }  # fmt: skip
        if ready < REPLICAS:
            status["unavailableReplicas"] = REPLICAS - ready
        raw = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": w.name,
                "namespace": w.namespace,
                "uid": w.uid,
                "generation": w.generation,
                "creationTimestamp": w.created,
                "labels": {
                    **selector,
                    "app.kubernetes.io/name": w.component,
                    "app.kubernetes.io/managed-by": "Helm",
                    **({ACTIVE_LABEL: "true" if w.active else "false"} if w.slot is not None else {}),
                },
                "annotations": {
                    "deployment.kubernetes.io/revision": str(w.generation),
                    "meta.helm.sh/release-name": w.release,
                    "meta.helm.sh/release-namespace": w.namespace,
                },
            },
            "spec": {
                "replicas": REPLICAS,
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
        return self._objects.put(DEPLOYMENTS, raw)
