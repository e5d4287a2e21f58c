"""Kubernetes adapter of the fleet reader: customer namespaces and the Helm release in each.

Lists are paginated as the API server does it (``limit`` + ``continue``); a server that answers
everything at once (no ``continue`` token) works the same. Each namespace costs one LIST of its
deployed release Secrets (selector ``owner=helm,status=deployed``: normally one Secret, not the whole
history), a second one only when no revision is deployed, and one decode: the chosen revision's.
Responses are read as raw JSON (`_preload_content=False`): building the client's models for 10,000
namespaces would cost more than the requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from upgrader.cluster.kube_calls import as_int, read_json, translated_errors
from upgrader.cluster.release import ReleaseDecodeError, decode_release_data, parse_release
from upgrader.cluster.types import (
    ClusterConfig,
    ClusterPermanentError,
    ClusterTransientError,
    NamespaceRef,
    ReleaseSnapshot,
    ReleaseUnreadable,
)

PAGE_SIZE = 500  # items per LIST request (the API server's chunking; kubectl uses 500 too)
HELM_DEPLOYED = {"owner": "helm", "status": "deployed"}
HELM_ANY = {"owner": "helm"}
_LIST_RESTARTS = 3  # a continue token that expired (410 Gone) restarts the list, at most this often


class KubernetesFleetReader:
    """Reads the fleet with the official client; thread-safe (one client, its connection pool)."""

    def __init__(self, api_client: k8s.ApiClient, config: ClusterConfig) -> None:
        self._config = config
        self._core = k8s.CoreV1Api(api_client)
        self._lock = threading.Lock()
        self._requests = 0

    @property
    def requests(self) -> int:
        """Kubernetes API requests made so far (every page counts)."""
        return self._requests

    def _count(self) -> None:
        with self._lock:
            self._requests += 1

    def namespaces(self, label_selector: str | None = None) -> Iterator[NamespaceRef]:
        """Every namespace (those carrying `label_selector` when given), page by page, in name order."""
        for attempt in range(_LIST_RESTARTS + 1):
            seen: set[str] = set()
            try:
                for page in self._pages(self._core.list_namespace, "list namespaces", label_selector=label_selector):
                    for item in page:
                        meta = item.get("metadata") or {}
                        name = str(meta.get("name") or "")
                        if name and name not in seen:  # a restarted list may repeat names
                            seen.add(name)
                            yield NamespaceRef(name, dict(meta.get("labels") or {}))
                return
            except _ListExpired:
                if attempt == _LIST_RESTARTS:
                    raise ClusterTransientError("list namespaces: the list kept expiring (410 Gone); retry") from None

    def release_in(self, namespace: str, preferred: str) -> ReleaseSnapshot | None:
        """The Helm release of a customer namespace, read from its deployed revision; None when the
        namespace holds no release at all. With several releases, the one named `preferred`.

        Raises ReleaseUnreadable (the namespace's problem: forbidden, an unreadable Secret, several
        releases and none named `preferred`, no deployed revision) or ClusterTransientError.
        """
        action = f"list Helm release Secrets in {namespace}"
        try:
            secrets = self._secrets(namespace, HELM_DEPLOYED, action)
            every = secrets if secrets else self._secrets(namespace, HELM_ANY, action)
        except ClusterPermanentError as exc:
            raise ReleaseUnreadable(str(exc)) from exc
        if not every:
            return None
        names = sorted({str((s.get("metadata", {}).get("labels") or {}).get("name", "")) for s in every} - {""})
        if len(names) > 1 and preferred not in names:
            raise ReleaseUnreadable(
                f"{len(names)} Helm releases in {namespace} ({', '.join(names[:5])}) and none named {preferred}"
            )
        name = preferred if preferred in names else names[0]
        mine = [s for s in every if (s.get("metadata", {}).get("labels") or {}).get("name") == name]
        chosen = _last_good(mine)
        if chosen is None:
            statuses = sorted({str((s["metadata"].get("labels") or {}).get("status")) for s in mine})
            raise ReleaseUnreadable(
                f"Helm release {name} in {namespace} has no deployed revision ({', '.join(statuses)})"
            )
        labels = chosen["metadata"].get("labels") or {}
        try:
            record = parse_release(
                decode_release_data(str((chosen.get("data") or {}).get("release", ""))),
                status_label=str(labels.get("status") or ""),
            )
        except ReleaseDecodeError as exc:
            raise ReleaseUnreadable(
                f"Helm release Secret {chosen['metadata'].get('name')} in {namespace} is unreadable: {exc}"
            ) from exc
        versions: dict[str, str | None] = {}
        sources: dict[str, str | None] = {}
        repositories: dict[str, str] = {}
        digests: dict[str, str] = {}
        for component, key in self._config.image_tag_keys.items():
            versions[component], sources[component] = record.component_version(component, key)
            if (repository := record.image_repository(key)) is not None:
                repositories[component] = repository
            if (digest := record.digest_of(key)) is not None:
                digests[component] = digest
        return ReleaseSnapshot(
            name=name,
            revision=record.revision or as_int(labels.get("version")),
            status=record.status,
            chart_name=record.chart_name,
            chart_version=record.chart_version,
            versions=versions,
            sources=sources,
            repositories=repositories,
            digests=digests,
        )

    def _secrets(self, namespace: str, wanted: dict[str, str], action: str) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in wanted.items())
        found: list[dict[str, Any]] = []
        for page in self._pages(
            self._core.list_namespaced_secret, action, namespace=namespace, label_selector=selector
        ):
            # The selector again: a server that ignores it must not make another Secret a release.
            found.extend(
                s for s in page if _labelled(s, wanted) and s.get("type", "helm.sh/release.v1") == "helm.sh/release.v1"
            )
        return found

    def _pages(self, call: Callable[..., Any], action: str, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        token: str | None = None
        while True:
            arguments = {k: v for k, v in kwargs.items() if v is not None}
            if token:
                arguments["_continue"] = token
            self._count()
            with translated_errors(action):
                try:
                    response = call(limit=PAGE_SIZE, _preload_content=False, **arguments)
                except ApiException as exc:
                    if exc.status == 410 and token:
                        raise _ListExpired from exc
                    raise
                body = read_json(response)
            yield list(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue") or None
            if not token:
                return


class _ListExpired(Exception):
    """The continue token is too old (410 Gone): the list must start again."""


def _labelled(secret: dict[str, Any], wanted: dict[str, str]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _last_good(secrets: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The revision that runs: the newest deployed one, else the newest superseded (as helm recovers to)."""
    for status in ("deployed", "superseded"):
        matching = [s for s in secrets if (s["metadata"].get("labels") or {}).get("status") == status]
        if matching:
            return max(matching, key=lambda s: as_int((s["metadata"].get("labels") or {}).get("version")))
    return None
