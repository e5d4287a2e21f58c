"""Lambda timeouts sit above what a function can legitimately wait for: a slow SQL statement and, for
the cluster workers, a few bounded Kubernetes calls. A function killed by its own timeout in the
middle of a transaction or a Job creation is the failure this prevents."""

from __future__ import annotations

from typing import Any

from upgrader.cluster.access import REQUEST_TIMEOUT_SECONDS
from upgrader.infra.db import LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS

from tests.test_template import functions_by_folder, load_template

# The most Kubernetes calls one invocation makes in a row (StartHelmJob: the Jobs of the row, the
# release, the Jobs on the release, the create).
KUBERNETES_CALLS_PER_INVOCATION = 4
MARGIN_SECONDS = 10


def _timeout(template: dict[str, Any], resource: dict[str, Any]) -> int:
    return int(resource["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"]))


def test_every_function_outlasts_a_slow_statement() -> None:
    template = load_template()
    # statement_timeout covers a statement's lock waits too (lock_timeout is the shorter of the two)
    assert LOCK_TIMEOUT_MS <= STATEMENT_TIMEOUT_MS
    sql = STATEMENT_TIMEOUT_MS / 1000
    short = {folder: _timeout(template, res) for folder, (_, res) in functions_by_folder(template).items()
             if _timeout(template, res) < sql + MARGIN_SECONDS}  # fmt: skip
    assert short == {}


def test_cluster_workers_outlast_a_slow_statement_and_their_kubernetes_calls() -> None:
    template = load_template()
    needed = (
        STATEMENT_TIMEOUT_MS / 1000 + KUBERNETES_CALLS_PER_INVOCATION * sum(REQUEST_TIMEOUT_SECONDS) + MARGIN_SECONDS
    )
    workers = {folder: _timeout(template, res) for folder, (_, res) in functions_by_folder(template).items()
               if "KubernetesLayer" in str(res["Properties"].get("Layers"))}  # fmt: skip
    assert workers and all(timeout >= needed for timeout in workers.values()), (needed, workers)
