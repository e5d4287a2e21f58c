"""Helm releases as Helm would have left them, for tests and the local stack: revisions 1..N of a release
in Helm's storage format (the newest in a given state), and the descriptions Helm writes for them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from upgradectl.local.simcluster.charts import DEFAULT_CHART_NAME, ChartCatalog, render_manifest, workload_units
from upgradectl.local.simcluster.helm_run import WAIT_EXPIRED
from upgradectl.local.simcluster.releases import PENDING, ReleaseStore, go_time, new_record
from upgradectl.local.simcluster.values import nest
from upgradectl.local.simcluster.workloads import Workloads


def seed_release(
    store: ReleaseStore,
    workloads: Workloads,
    catalog: ChartCatalog,
    *,
    namespace: str,
    release: str,
    status: str = "deployed",
    revision: int = 1,
    values: Mapping[str, Any] | None = None,
    chart_version: str | None = None,
    chart_name: str | None = None,
    now: float,
) -> None:
    """Revisions 1..revision of a release installed with `values` from the chart version: the newest
    in `status`; before a pending-* or failed one the previous stays deployed (as Helm leaves it);
    the others superseded. Every component's Deployment is there and ready."""
    chart = catalog.get(chart_name or _default_chart_name(catalog), chart_version)
    config = nest(values)
    chart_record = chart.record()
    manifest = render_manifest(chart_record, config, release)
    store.delete(namespace, release)
    first = go_time()
    for number in range(1, revision + 1):
        state = status if number == revision else "superseded"
        if number == revision - 1 and (status in PENDING or status == "failed"):
            state = "deployed"
        store.create(
            new_record(
                name=release,
                namespace=namespace,
                version=number,
                status=state,
                chart=chart_record,
                config=config,
                manifest=manifest,
                description=seed_description(number, state, release),
                first_deployed=first,
            )
        )
    units = workload_units(chart_record, config)
    for unit in units:
        workloads.set_image(namespace, release, unit.key, unit.image, now=now, settle=True, active=unit.active)
    workloads.remove_others(namespace, release, {unit.key for unit in units})


def _default_chart_name(catalog: ChartCatalog) -> str:
    return DEFAULT_CHART_NAME if catalog.versions(DEFAULT_CHART_NAME) else catalog.names()[0]


def seed_description(number: int, status: str, release: str) -> str:
    """What Helm writes as the description of a revision left in `status`."""
    if status == "pending-upgrade":
        return "Preparing upgrade"
    if status == "pending-rollback":
        return f"Rollback to {number - 1}"
    if status == "pending-install":
        return "Initial install underway"
    if status == "failed":
        return f'Upgrade "{release}" failed: {WAIT_EXPIRED}'
    return "Install complete" if number == 1 else "Upgrade complete"
