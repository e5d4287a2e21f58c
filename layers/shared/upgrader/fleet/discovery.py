"""Discovery: the customer inventory read from the cluster, as operators find customers.

A customer is a namespace matching the configured pattern (default ``customer-*``) with a Helm release
in it; its id follows the configured rule (default ``customer-abc123`` -> ``cust_abc123``); each
component's version is read from the release's deployed revision (user values, else the chart's
defaults) at the configured value key. A sync compares what it reads with the inventory:

- a new namespace with a release: the customer is added (active);
- versions that differ from what the inventory recorded: the inventory takes the release's (the cluster
  is the truth about what runs) and the customer is marked with drift, both values kept, until someone
  acknowledges it; every drift is an event in the customer's history;
- a namespace or release that is gone: the customer becomes ``decommissioned``, never deleted (its
  history stays); when it comes back it is active again;
- a release that cannot be read (an unreadable Secret, forbidden, two releases): reported, nothing
  about that customer changes.

A customer whose release one of our own helm operations holds (its lease), or whose recorded revision
is newer than the one read, keeps its record: the operation records what the release holds itself.
Memory stays bounded whatever the fleet: namespaces are read page by page and releases in chunks, each
chunk written in one transaction.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from upgrader.cluster.types import (
    ClusterPermanentError,
    ClusterTransientError,
    FleetReader,
    NamespaceRef,
    ReleaseSnapshot,
    ReleaseUnreadable,
)
from upgrader.contract.base import DNS_LABEL_PATTERN, VERSION_PATTERN
from upgrader.contract.customer_models import SyncSummary
from upgrader.fleet.discovery_rules import DiscoveryRules, RuleError
from upgrader.fleet.ring_labels import RingFromLabel, RingLabelRule
from upgrader.images.references import image_of
from upgrader.infra.errors import InvalidValue

CHUNK = 200  # namespaces read and written per transaction
MAX_PROBLEMS = 200  # problems kept in a sync's result (the count is always exact)
# What a release may record for the inventory: the API's version grammar (an OCI tag) for every image tag,
# Helm's chart version grammar (SemVer characters) and a release name Helm accepts (a DNS label, <= 53).
_VERSION = re.compile(VERSION_PATTERN)
_CHART_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$")
_RELEASE_NAME = re.compile(DNS_LABEL_PATTERN)
_QUOTED = 40  # characters of a bad value quoted in the problem (the value is the customer's, untrusted)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one customer namespace holds, as read now."""

    namespace: str
    customer_id: str | None  # None when the id rule fails (error says why)
    release: ReleaseSnapshot | None  # None: no Helm release in the namespace (or unreadable: see error)
    error: str | None = None


def observe(reader: FleetReader, rules: DiscoveryRules, namespace: NamespaceRef) -> Observation:
    """Read one namespace; every problem becomes the observation's error, never an exception."""
    try:
        customer_id = rules.customer_id(namespace)
    except RuleError as exc:
        return Observation(namespace.name, None, None, str(exc))
    try:
        release = reader.release_in(namespace.name, rules.release_name(namespace.name))
    except ReleaseUnreadable as exc:
        hint = "" if "403" not in str(exc) else " (apply k8s/rbac/31-customer-namespace-bindings.yaml to it)"
        return Observation(namespace.name, customer_id, None, f"{exc}{hint}")
    except ClusterTransientError as exc:
        return Observation(namespace.name, customer_id, None, f"not read this time: {exc}")
    if release is not None and (problem := invalid_release_data(namespace.name, release)):
        return Observation(namespace.name, customer_id, None, problem)
    return Observation(namespace.name, customer_id, release)


def invalid_release_data(namespace: str, release: ReleaseSnapshot) -> str | None:
    """Why what a release records cannot go into the inventory as it is, or None when it can.

    A release's values are the customer's data: an image tag the API would refuse as a version (too long,
    spaces, markup), a chart version or release name Helm could not have written are that namespace's
    problem (reported, nothing about the customer changes); the sync goes on with the others.
    """
    problems = [
        f"component {component}'s image tag {_quote(version)} is not a valid version ({VERSION_PATTERN})"
        for component, version in sorted(release.versions.items())
        if version is not None and not _VERSION.fullmatch(version)
    ]
    for component, repository in sorted(release.repositories.items()):
        try:
            image_of(repository, "v1")
        except InvalidValue:  # its reason quotes the value whole: say what is expected instead
            problems.append(f"component {component}'s image repository {_quote(repository)} is not an image "
                            "repository ([host[:port]/]lower-case path, at most 255 characters)")  # fmt: skip
    if release.chart_version is not None and not _CHART_VERSION.fullmatch(release.chart_version):
        problems.append(f"chart version {_quote(release.chart_version)} is not a valid chart version")
    if len(release.name) > 53 or not _RELEASE_NAME.fullmatch(release.name):
        problems.append(f"release name {_quote(release.name)} is not a valid Helm release name")
    if not problems:
        return None
    return f"Helm release in {namespace} records data the inventory refuses: " + "; ".join(problems)


def _quote(value: str) -> str:
    """A bounded, printable quote of an untrusted value, with its length when cut."""
    if len(value) <= _QUOTED:
        return ascii(value)
    return f"{ascii(value[:_QUOTED])}... ({len(value)} characters)"


# --------------------------------------------------------------------------------------- comparing
@dataclass(frozen=True)
class KnownCustomer:
    """A customer as the inventory records it (only what a sync compares)."""

    customer_id: str
    namespace: str
    release_name: str
    status: str
    versions: dict[str, str]
    release_revision: int | None
    release_error: str | None
    leased: bool  # one of our helm operations holds its release right now
    ring: str | None = None  # as stored
    ring_from_label: bool = False  # the stored ring was read from the namespace's ring label


@dataclass
class Assessment:
    """What a sync writes for one observation. Event kinds: discovered, drift, decommissioned,
    reappeared, release_unreadable."""

    namespace: str
    customer_id: str | None
    action: str  # add | update | decommission | reappear | keep | unreadable | skip (not a customer)
    release: ReleaseSnapshot | None = None
    versions: dict[str, str] = field(default_factory=dict)  # what the inventory records from now on
    drift: dict[str, dict[str, str]] = field(default_factory=dict)  # component -> {recorded, release}
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    problem: str | None = None
    busy: bool = False  # versions not compared: our own operation holds (or just changed) the release
    changed: bool = False  # the inventory's versions changed
    ring: tuple[str | None, bool] | None = None  # (ring, from its label) to store; None: the ring stays as it is

    @property
    def seen(self) -> bool:
        """The customer's namespace is there: a sync that ends must not decommission it."""
        return self.customer_id is not None and self.action != "skip"


def assess(known: KnownCustomer | None, seen: Observation, *, id_owner: str | None = None) -> Assessment:
    """Compare one observation with what the inventory knows (pure: the rules of a sync).

    `id_owner`: the namespace of an existing customer that already has the id this namespace would get.
    """
    result = Assessment(seen.namespace, known.customer_id if known else seen.customer_id, "keep", seen.release)
    if seen.error is not None:
        result.problem = seen.error
        if known is None:
            result.action = "skip"
            return result
        result.action = "unreadable"
        if known.release_error != seen.error:
            result.events.append(("release_unreadable", {"message": seen.error}))
        return result
    release = seen.release
    if release is None:
        if known is None:
            result.action, result.problem = "skip", f"namespace {seen.namespace} holds no Helm release: not a customer"
            return result
        if known.status != "decommissioned":
            result.action = "decommission"
            result.events.append(("decommissioned", {"reason": f"no Helm release in namespace {seen.namespace}"}))
        return result
    observed = {c: v for c, v in release.versions.items() if v}
    if known is None:
        if id_owner is not None:
            result.action = "skip"
            result.problem = f"customer id {seen.customer_id} is already the customer of namespace {id_owner}"
            return result
        result.action, result.versions, result.changed = "add", observed, True
        result.events.append(("discovered", _release_detail(release)))
        return result
    result.action = "update"
    if known.status == "decommissioned":
        result.action = "reappear"
        result.events.append(("reappeared", _release_detail(release)))
    if known.leased or (known.release_revision is not None and release.revision < known.release_revision):
        result.busy = True
        result.versions = dict(known.versions)
        return result
    for component, version in observed.items():
        recorded = known.versions.get(component)
        if recorded is not None and recorded != version:
            result.drift[component] = {"recorded": recorded, "release": version}
    result.versions = {**known.versions, **observed}
    result.changed = result.versions != known.versions
    if result.drift:
        result.events.append(
            ("drift", {"components": result.drift, "release": release.name, "revision": release.revision})
        )
    return result


def _release_detail(release: ReleaseSnapshot) -> dict[str, Any]:
    return {
        "release": release.name,
        "revision": release.revision,
        "chartVersion": release.chart_version,
        "versions": {c: v for c, v in release.versions.items() if v},
        "sources": {c: s for c, s in release.sources.items() if s},
    }


# ------------------------------------------------------------------------------------------- a sync
class SyncStore(Protocol):
    """What a sync needs of the database (`upgrader.fleet.syncs.SyncRepository`)."""

    def apply(
        self,
        sync_id: int,
        namespaces: Sequence[str],
        ids: Sequence[str],
        decide: Callable[[dict[str, KnownCustomer], dict[str, str]], list[Assessment]],
    ) -> list[Assessment]: ...

    def current_customers(self) -> int: ...

    def decommission_unseen(self, sync_id: int) -> int: ...

    def finish(self, sync_id: int, counts: dict[str, int], problems: list[dict[str, Any]]) -> SyncSummary: ...

    def fail(self, sync_id: int, error: str) -> None: ...


@dataclass
class SyncOutcome:
    counts: dict[str, int]
    problems: list[dict[str, str | None]]


class NothingFound(Exception):
    """No namespace matches while the inventory has customers: refuse to decommission them all."""


def run_sync(
    sync_id: int,
    *,
    reader: FleetReader,
    store: SyncStore,
    rules: DiscoveryRules,
    rings: RingLabelRule | None = None,
    concurrency: int = 8,
    chunk: int = CHUNK,
    clock: Callable[[], float] = time.monotonic,
) -> SyncOutcome:
    """Read every customer namespace and bring the inventory in line, chunk by chunk; with `rings`, each
    customer's ring from its namespace's ring label (the label wins; without one, a ring that came from
    a label goes back to the default, a ring set through the API stays).

    Customers are decommissioned for a missing namespace only after the whole namespace list was read.
    """
    began = clock()
    counts = dict.fromkeys(
        ("namespaces", "matched", "customers", "added", "updated", "unchanged", "drifted", "decommissioned",
         "reappeared", "unreadable", "busy", "withoutRelease", "problems"),
        0,
    )  # fmt: skip
    problems: list[dict[str, str | None]] = []
    matched: list[NamespaceRef] = []
    for namespace in reader.namespaces(rules.label_selector):
        counts["namespaces"] += 1
        if rules.matches(namespace.name):
            matched.append(namespace)
    counts["matched"] = len(matched)
    if not matched and store.current_customers() > 0:
        raise NothingFound(
            f"no namespace matches {rules.namespace_pattern!r} (of {counts['namespaces']} listed), but the inventory "
            "has customers: nothing was decommissioned. Check CUSTOMER_NAMESPACE_PATTERN and that the sync may "
            "list namespaces (k8s/rbac/40-lambda-namespace-lister.yaml)"
        )
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="discovery") as pool:
        for start in range(0, len(matched), chunk):
            part = matched[start : start + chunk]
            observations = list(pool.map(lambda ns: observe(reader, rules, ns), part))
            ids = [o.customer_id for o in observations if o.customer_id]
            # Compared with the inventory as it is once the releases were read, under the rows' locks.
            labels = {ns.name: rings.ring_for(ns) for ns in part} if rings is not None else {}
            assessments = store.apply(
                sync_id, [o.namespace for o in observations], ids, functools.partial(_decide, observations, labels)
            )
            for item in assessments:
                _count(counts, item)
                if item.problem is not None:
                    counts["problems"] += 1
                    if len(problems) < MAX_PROBLEMS:
                        problems.append(
                            {"namespace": item.namespace, "customerId": item.customer_id, "message": item.problem}
                        )
    counts["decommissioned"] += store.decommission_unseen(sync_id)
    counts["requests"] = reader.requests
    counts["durationMs"] = int((clock() - began) * 1000)
    return SyncOutcome(counts, problems)


def execute_sync(
    sync_id: int,
    *,
    reader: Callable[[], FleetReader],
    store: SyncStore,
    rules: DiscoveryRules,
    rings: RingLabelRule | None = None,
    concurrency: int = 8,
) -> SyncSummary:
    """Run one sync and record how it ended (completed with its counts and problems, or failed with
    the reason); returns the sync's row. A failed sync decommissions nobody."""
    try:
        outcome = run_sync(sync_id, reader=reader(), store=store, rules=rules, rings=rings, concurrency=concurrency)
    except (NothingFound, ClusterTransientError, ClusterPermanentError) as exc:
        store.fail(sync_id, str(exc))
        raise SyncFailed(str(exc)) from exc
    except BaseException as exc:
        store.fail(sync_id, f"unexpected {type(exc).__name__}: {exc}")
        raise
    return store.finish(sync_id, outcome.counts, outcome.problems)


class SyncFailed(Exception):
    """The sync could not read the fleet (recorded on its row; nothing was decommissioned)."""


def _decide(
    observations: Sequence[Observation],
    labels: dict[str, RingFromLabel],
    known: dict[str, KnownCustomer],
    owners: dict[str, str],
) -> list[Assessment]:
    decisions = []
    for seen in observations:
        owner = owners.get(seen.customer_id) if seen.customer_id else None
        item = assess(known.get(seen.namespace), seen, id_owner=owner if owner != seen.namespace else None)
        if seen.namespace in labels and item.action not in ("skip", "decommission"):
            _read_ring(item, known.get(seen.namespace), labels[seen.namespace])
        decisions.append(item)
    return decisions


def _read_ring(item: Assessment, known: KnownCustomer | None, label: RingFromLabel) -> None:
    """The ring to store from the namespace's label: the label's ring; none (or one outside the order: a
    problem, reported) leaves an API-set ring as it is and returns a label-set one to the default."""
    before = (known.ring, known.ring_from_label) if known is not None else (None, False)
    after = (label.ring, True) if label.ring is not None else (None, False) if before[1] else before
    if label.problem is not None:
        after = before
        item.problem = f"{item.problem}; {label.problem}" if item.problem else label.problem
    if after != before:
        item.ring = after
        item.events.append(("ring", {"before": before[0], "after": after[0], "fromLabel": after[1]}))


def _count(counts: dict[str, int], item: Assessment) -> None:
    if item.action == "skip":
        if item.release is None and item.problem and item.problem.endswith("not a customer"):
            counts["withoutRelease"] += 1
        return
    counts["customers"] += item.action not in ("decommission",)
    counts["added"] += item.action == "add"
    counts["reappeared"] += item.action == "reappear"
    counts["decommissioned"] += item.action == "decommission"
    counts["unreadable"] += item.action == "unreadable"
    counts["busy"] += item.busy
    counts["drifted"] += bool(item.drift)
    if item.action in ("update", "reappear") and not item.busy:
        counts["updated" if item.changed else "unchanged"] += 1
