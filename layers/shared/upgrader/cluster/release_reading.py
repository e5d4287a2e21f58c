"""Reading what a customer's release holds and runs: its Helm state (from its Secrets), its workloads'
rollout and an HTTP health probe through its Service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from upgrader.cluster.bluegreen import SLOT_LABEL, SLOTS
from upgrader.cluster.job_spec import DNS_LABEL_RE, LABEL_VALUE_RE, valid_tag
from upgrader.cluster.kube_calls import (
    api_status,
    as_int,
    body_excerpt,
    label_selector,
    labels_match,
    read_json,
    translated_errors,
)
from upgrader.cluster.release import ReleaseDecodeError, decode_release_data, parse_release, secret_name
from upgrader.cluster.types import ClusterConfig, ClusterPermanentError, HttpHealth, ReleaseInfo, RolloutState

# Workload labels of the customer chart (Helm's recommended labels).
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_APP_COMPONENT = "app.kubernetes.io/component"
LABEL_SLOT = SLOT_LABEL  # blue-green: the slot a Deployment runs (docs/blue-green.md)
PROBE_TIMEOUT_SECONDS = 10.0
PROBE_BODY_BYTES = 512  # read at most this much of a probe's answer
# Service proxy probes: a port name (IANA_SVC_NAME: <= 15 chars, at least one letter) or a number,
# and a path of unreserved URL characters only (no %, ?, #, ;): nothing to re-encode or smuggle.
_PORT_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_PORT_NUMBER = re.compile(r"^[1-9][0-9]{0,4}$")
_PROBE_PATH = re.compile(r"^[A-Za-z0-9._~/-]{0,255}$")


WorkloadVerdict = tuple[str, str]  # (phase, "deployment <name>: ...")


def _count(status: Mapping[str, Any], key: str) -> int:
    value = status.get(key)
    return value if isinstance(value, int) else 0


def _generation_gap(meta: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    generation, observed = _count(meta, "generation"), _count(status, "observedGeneration")
    return f"observed generation {observed} < {generation}" if observed < generation else None


def deployment_verdict(obj: Mapping[str, Any]) -> WorkloadVerdict:
    """Rollout verdict of one Deployment (a raw API object), the way `kubectl rollout status` decides.

    A ProgressDeadlineExceeded condition counts only once the controller has observed the current
    generation: before that it belongs to the previous rollout.
    """
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name = meta.get("name", "?")
    want = spec.get("replicas") if isinstance(spec.get("replicas"), int) else 1
    ready, updated = _count(status, "readyReplicas"), _count(status, "updatedReplicas")
    available, total = _count(status, "availableReplicas"), _count(status, "replicas")
    stale = _generation_gap(meta, status)
    if stale is None:
        for condition in status.get("conditions") or []:
            if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
                "Progressing", "False", "ProgressDeadlineExceeded"
            ):  # fmt: skip
                message = condition.get("message") or "progress deadline exceeded"
                return "failed", f"deployment {name}: ProgressDeadlineExceeded: {message} ({ready}/{want} ready)"
    parts = [f"{ready}/{want} ready"]
    if updated != want:
        parts.append(f"{updated}/{want} updated")
    if available != want:
        parts.append(f"{available}/{want} available")
    if total > updated and updated == want:
        parts.append(f"{total - updated} old replicas terminating")
    if stale:
        parts.append(stale)
    if spec.get("paused"):
        parts.append("paused")
    done = stale is None and ready == updated == available == want and total <= want and not spec.get("paused")
    return ("ready" if done else "progressing"), f"deployment {name}: " + ", ".join(parts)


def statefulset_verdict(obj: Mapping[str, Any]) -> WorkloadVerdict:
    """Rollout verdict of one StatefulSet: all replicas ready and updated, current == update revision."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name = meta.get("name", "?")
    want = spec.get("replicas") if isinstance(spec.get("replicas"), int) else 1
    ready, updated = _count(status, "readyReplicas"), _count(status, "updatedReplicas")
    current, update = status.get("currentRevision"), status.get("updateRevision")
    stale = _generation_gap(meta, status)
    parts = [f"{ready}/{want} ready"]
    if updated != want:
        parts.append(f"{updated}/{want} updated")
    revision_behind = bool(current and update and current != update)
    if revision_behind:
        parts.append(f"revision {current} -> {update}")
    if stale:
        parts.append(stale)
    done = stale is None and ready == updated == want and not revision_behind
    return ("ready" if done else "progressing"), f"statefulset {name}: " + ", ".join(parts)


def summarize_rollout(verdicts: Mapping[str, WorkloadVerdict]) -> RolloutState:
    """Combine per-workload verdicts (keyed "deployment/<name>"): any failed -> failed; all ready -> ready."""
    names = tuple(sorted(verdicts))
    ordered = [verdicts[name] for name in names]
    failed = [detail for phase, detail in ordered if phase == "failed"]
    waiting = [detail for phase, detail in ordered if phase == "progressing"]
    if failed:
        return RolloutState("failed", "; ".join(failed + waiting), names)
    if waiting:
        return RolloutState("progressing", "; ".join(waiting), names)
    return RolloutState("ready", "; ".join(detail for _, detail in ordered), names)


def validate_probe(namespace: str, service: str, port: str, path: str) -> str:
    """Check a service-proxy probe target; return the path without its leading slash.

    Raises ClusterPermanentError: the values become part of an API server URL, so only DNS labels, a
    port name or number and unreserved URL characters (no "." or ".." segments) get through.
    """
    problems: list[str] = []
    if len(namespace) > 63 or not DNS_LABEL_RE.fullmatch(namespace):
        problems.append(f"invalid namespace {namespace!r}")
    if len(service) > 63 or not DNS_LABEL_RE.fullmatch(service):
        problems.append(f"invalid service name {service!r}")
    if _PORT_NUMBER.fullmatch(port):
        if not 1 <= int(port) <= 65535:
            problems.append(f"invalid port number {port!r}")
    elif len(port) > 15 or not _PORT_NAME.fullmatch(port) or not any(c.isalpha() for c in port):
        problems.append(f"invalid port {port!r}")
    relative = path[1:] if path.startswith("/") else path
    if not _PROBE_PATH.fullmatch(relative) or any(seg in (".", "..") for seg in relative.split("/")):
        problems.append(f"invalid probe path {path!r}")
    if problems:
        raise ClusterPermanentError("invalid http health check: " + "; ".join(problems))
    return relative


def _probe_detail(probe: str, status: int, body: str | None) -> str:
    excerpt = body_excerpt(body)
    return f"{probe}: HTTP {status}: {excerpt}" if excerpt else f"{probe}: HTTP {status}"


class ReleaseReading:
    """The gateway's reads of a release, its workloads and its health."""

    _config: ClusterConfig
    _core: k8s.CoreV1Api
    _apps: k8s.AppsV1Api

    def release_status(self, namespace: str, release: str) -> ReleaseInfo:
        """Helm's view of a release from its Secrets (`sh.helm.release.v1.<release>.v<N>`).

        The newest revision gives status and revision. The revision a recover should return to
        (`last_deployed_revision`) is the newest one in status deployed or, when none is (a failed
        non-atomic upgrade or rollback), the newest superseded one; its release record (decoded from
        Helm's storage format) gives the chart version and each component's image tag: what runs.
        """
        wanted = {"owner": "helm", "name": release}
        with translated_errors(f"list helm secrets of {namespace}/{release}"):
            try:
                response: Any = self._core.list_namespaced_secret(
                    namespace=namespace, label_selector=label_selector(wanted), _preload_content=False
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return ReleaseInfo(release, namespace, None, None, None)
            items = read_json(response).get("items") or []
        revisions: list[tuple[int, str, dict[str, Any]]] = []
        for secret in items:
            meta = secret.get("metadata") or {}
            labels = meta.get("labels") or {}
            if not labels_match(labels, wanted) or meta.get("name") != secret_name(
                release, as_int(labels.get("version"))
            ):
                continue
            revisions.append((as_int(labels.get("version")), str(labels.get("status", "unknown")), secret))
        if not revisions:
            return ReleaseInfo(release, namespace, None, None, None)
        revisions.sort(key=lambda item: item[0])
        revision, status = revisions[-1][0], revisions[-1][1]
        deployed = [r for r, s, _ in revisions if s == "deployed"]
        superseded = [r for r, s, _ in revisions if s == "superseded"]
        last_good = max(deployed) if deployed else (max(superseded) if superseded else None)
        # Versions and chart come from the last revision that deployed: while the newest one is failed
        # or pending, what runs is what that revision left (a failed rollback changed nothing that ran).
        source = next((item for item in revisions if item[0] == last_good), revisions[-1])
        try:
            record = parse_release(
                decode_release_data(str((source[2].get("data") or {}).get("release", ""))), status_label=source[1]
            )
        except ReleaseDecodeError as exc:
            raise ClusterPermanentError(
                f"Helm release Secret {secret_name(release, source[0])} in {namespace} is unreadable: {exc}"
            ) from exc
        # A tag the API's version grammar refuses (the release's values are the customer's: 201 characters,
        # markup) is not a version the inventory records: None, as if the release did not set it.
        versions = {c: valid_tag(record.component_version(c, key)[0]) for c, key in self._config.image_tag_keys.items()}
        slots = {c: found for c in self._config.image_tag_keys if (found := record.slots_of(c)) is not None}
        digests = frozenset(c for c, key in self._config.image_tag_keys.items() if record.declares_digest(c, key))
        return ReleaseInfo(
            release, namespace, status, revision, last_good,
            chart_name=record.chart_name, chart_version=record.chart_version, versions=versions, slots=slots,
            digest_values=digests, secrets=record.secret_values(),
        )  # fmt: skip

    def rollout_status(self, namespace: str, release: str, component: str, slot: str | None = None) -> RolloutState:
        """Have the component's Deployments and StatefulSets of this release finished rolling out?

        Workloads are those labelled app.kubernetes.io/instance=<release> and
        app.kubernetes.io/component=<component> in the namespace (with `slot`, a blue-green slot: also
        upgrades.example.com/slot=<slot>). None at all is "failed": the chart does not label them as
        expected, or the release is not where we think it is.
        """
        problems = []
        if len(namespace) > 63 or not DNS_LABEL_RE.fullmatch(namespace):
            problems.append(f"invalid namespace {namespace!r}")
        if len(release) > 53 or not DNS_LABEL_RE.fullmatch(release):
            problems.append(f"invalid release name {release!r}")
        if len(component) > 63 or not LABEL_VALUE_RE.fullmatch(component):
            problems.append(f"invalid component {component!r}")
        if slot is not None and slot not in SLOTS:
            problems.append(f"invalid slot {slot!r}")
        if problems:
            raise ClusterPermanentError("invalid rollout check: " + "; ".join(problems))
        wanted = {LABEL_INSTANCE: release, LABEL_APP_COMPONENT: component}
        if slot is not None:
            wanted[LABEL_SLOT] = slot
        selector = label_selector(wanted)
        verdicts: dict[str, tuple[str, str]] = {}
        listings = (
            ("deployment", self._apps.list_namespaced_deployment, deployment_verdict),
            ("statefulset", self._apps.list_namespaced_stateful_set, statefulset_verdict),
        )
        for kind, list_call, verdict in listings:
            with translated_errors(f"list {kind}s of {namespace}/{release}"):
                try:
                    # Raw JSON: a handful of status fields, no model build of every pod template.
                    response: Any = list_call(namespace=namespace, label_selector=selector, _preload_content=False)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    continue
                items = read_json(response).get("items") or []
            for obj in items:
                meta = obj.get("metadata") or {}
                # Filter ourselves too: selectors are a server feature some fakes (and proxies) ignore.
                if labels_match(meta.get("labels"), wanted) and meta.get("name"):
                    verdicts[f"{kind}/{meta['name']}"] = verdict(obj)
        if not verdicts:
            return RolloutState(
                "failed", f"no Deployment or StatefulSet labelled {selector} in namespace {namespace}", ()
            )
        return summarize_rollout(verdicts)

    def http_health(self, namespace: str, service: str, port: str, path: str) -> HttpHealth:
        """GET `path` on `service:port` through the API server's service proxy; 2xx is healthy.

        Any other HTTP status is unhealthy, 5xx included: a 503 may come from the service or from the
        API server ("no endpoints available"), and they cannot always be told apart. Exceptions: the
        API server's own 401 (token expired) and 429 (throttled) are ClusterTransientError, its own 403
        (RBAC: services/proxy not granted) is ClusterPermanentError: neither says anything about the
        service. Connection errors and timeouts are ClusterTransientError.
        """
        relative = validate_probe(namespace, service, port, path)
        target = f"{service}:{port}"
        probe = f"GET {namespace}/{target}/{relative}"
        with translated_errors(probe):
            try:
                response: Any = self._core.connect_get_namespaced_service_proxy_with_path(
                    name=target,
                    namespace=namespace,
                    path=relative,
                    _preload_content=False,
                    _request_timeout=PROBE_TIMEOUT_SECONDS,
                )
            except ApiException as exc:
                status = exc.status or 0
                from_api_server = api_status(exc.body) is not None
                if status == 0 or (from_api_server and status in (401, 403, 429)):
                    raise  # mapped by translated_errors: 0/401/429 transient, 403 permanent
                return HttpHealth(False, status, _probe_detail(probe, status, exc.body))
            try:
                body = response.read(PROBE_BODY_BYTES)
            finally:
                response.close()  # an unread rest must not go back to the pool
                response.release_conn()
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body or "")
        return HttpHealth(True, response.status, _probe_detail(probe, response.status, text))
