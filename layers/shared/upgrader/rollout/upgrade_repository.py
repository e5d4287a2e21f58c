"""SQL of the upgrades the API records and controls: the inventory's customers, a deploy's upgrade and rows,
an abort and a gate's release. Parameterized always; each public method is one transaction.

Status changes are conditional UPDATEs and counters move in the same transaction as the row they
count, so a retried or duplicated call changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from upgrader.infra.db import Row, columns, one_row, select, select_returned
from upgrader.infra.errors import UpgradeAlreadyActive
from upgrader.infra.vocabulary import ACTIVE_UPGRADE_STATUSES
from upgrader.notifications import events
from upgrader.rollout.halts import aborted_events, close_stop_gates, take_window_tokens
from upgrader.rollout.rollbacks import insert_run
from upgrader.rollout.run_records import RunRecord
from upgrader.rollout.upgrade_queries import UpgradeQueries
from upgrader.rollout.upgrade_records import UpgradeRecord, lock_upgrade

_UPGRADE = columns(UpgradeRecord)
_RUN = columns(RunRecord)
# The first key of the advisory locks a deploy takes per component it sets (the second: hashtext of its name).
ADVISORY_COMPONENT = 727100


@dataclass(frozen=True, slots=True)
class _GatedUpgrade(UpgradeRecord):
    """An upgrade with the task token of its open gate (what an abort fails)."""

    task_token: str | None


@dataclass(frozen=True)
class NewLogRow:
    customer_id: str
    namespace: str
    release_name: str
    from_version: str | None
    to_version: str
    wave: int  # -1: left out of every wave (see left_out)
    chart_version: str | None = None  # pinned for this customer (None: resolved from its release before helm)
    left_out: str | None = None  # why the deploy left it out (pinned, already_at_version): a skipped row
    detail: str | None = None  # the reason in words, recorded as the skipped row's error
    ring: str | None = None  # the customer's ring now: the version's evidence on that ring (upgrader.promotion)
    # a release train's row: component -> {"from": what it runs, "to": the train's version} (None: one component)
    components: dict[str, dict[str, str | None]] | None = None
    # the images' pre-flight (docs/images.md): the repository asked, the digest every wave installs, the
    # digest of the image it runs now (a rollback's); None: not checked
    image_repository: str | None = None
    target_digest: str | None = None
    rollback_digest: str | None = None


class UpgradeRepository(UpgradeQueries):
    # ---------------------------------------------------------------- inventory
    def upsert_customer(
        self,
        customer_id: str,
        namespace: str,
        release_name: str,
        *,
        status: str = "active",
        labels: dict[str, str] | None = None,
        versions: dict[str, str] | None = None,
        maintenance_window: dict[str, Any] | None = None,
        repositories: dict[str, str] | None = None,
    ) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                """
                INSERT INTO customers (id, namespace, release_name, status, labels, maintenance_window)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (id) DO UPDATE SET namespace = EXCLUDED.namespace,
                    release_name = EXCLUDED.release_name, status = EXCLUDED.status,
                    labels = EXCLUDED.labels, maintenance_window = EXCLUDED.maintenance_window,
                    updated_at = NOW()
                """,
                (
                    customer_id,
                    namespace,
                    release_name,
                    status,
                    Jsonb(labels or {}),
                    Jsonb(maintenance_window) if maintenance_window else None,
                ),
            )
            for component, version in (versions or {}).items():
                cur.execute(
                    """
                    INSERT INTO customer_component_versions (customer_id, component, version)
                    VALUES (%s, %s, %s)
                    ON CONFLICT (customer_id, component) DO UPDATE SET version = EXCLUDED.version,
                        updated_at = NOW()
                    """,
                    (customer_id, component, version),
                )
            for component, repository in (repositories or {}).items():
                cur.execute(
                    """
                    INSERT INTO customer_image_repositories (customer_id, component, repository) VALUES (%s, %s, %s)
                    ON CONFLICT (customer_id, component) DO UPDATE SET repository = EXCLUDED.repository
                    """,
                    (customer_id, component, repository),
                )

    # ---------------------------------------------------------------- upgrades
    def create_upgrade(
        self,
        *,
        component: str,
        from_version: str | None,
        to_version: str,
        strategy: str,
        parameters: dict[str, Any],
        metadata: dict[str, Any],
        requested_by: str | None,
        rows: Sequence[NewLogRow],
        total_waves: int,
        nonce: str,
        chart_version: str | None = None,
        within: Callable[[psycopg.Cursor[Row], int], None] | None = None,
        components: Sequence[str] | None = None,
    ) -> Row:
        """Record an upgrade and one pending log row per target customer, atomically; `within(cursor,
        upgrade_id)` writes what belongs to the upgrade in the same transaction (a forced promotion).

        Raises UpgradeAlreadyActive when another upgrade of the component is pending, running or
        awaiting continue (a partial unique index decides, so concurrent deploys cannot both win). A release
        train (`components`: every component it sets) is refused the same way when any of its components is
        set by an active upgrade, alone or in another train: each deploy takes an advisory lock per component
        it sets (in name order, so two trains never wait on each other in a cycle) and then looks.
        """
        touched = sorted(set(components or ()) | {component})
        try:
            with self._db.transaction() as cur:
                for name in touched:
                    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (ADVISORY_COMPONENT, name))
                cur.execute(
                    "SELECT id, status, component, components FROM system_upgrades"
                    " WHERE status = ANY(%(active)s) AND (component = ANY(%(c)s) OR components && %(c)s::text[])"
                    " ORDER BY id LIMIT 1",
                    {"active": list(ACTIVE_UPGRADE_STATUSES), "c": touched},
                )
                busy = cur.fetchone()
                if busy is not None:
                    shared = sorted(set(touched) & ({busy["component"]} | set(busy["components"] or ())))
                    raise UpgradeAlreadyActive(
                        f"an upgrade of component '{shared[0]}' is already pending, running or awaiting continue "
                        f"(upgrade {busy['id']}, status {busy['status']}); wait for it to finish or abort it"
                    )
                cur.execute(
                    """
                    INSERT INTO system_upgrades (component, from_version, to_version, strategy,
                        total_customers, status, metadata, requested_by, parameters, total_waves, chart_version,
                        components)
                    VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s)
                    RETURNING id
                    """,
                    (
                        component,
                        from_version,
                        to_version,
                        strategy,
                        len(rows),
                        Jsonb(metadata),
                        requested_by,
                        Jsonb(parameters),
                        total_waves,
                        chart_version,
                        list(components) if components else None,
                    ),
                )
                upgrade_id = one_row(cur)["id"]
                execution_name = f"upgrade-{upgrade_id}-{nonce}"
                cur.execute(
                    "UPDATE system_upgrades SET execution_name = %s WHERE id = %s RETURNING *",
                    (execution_name, upgrade_id),
                )
                upgrade = one_row(cur)
                insert_run(cur, execution_name, upgrade_id, "upgrade", "upgrade", requested_by)
                # A customer left out is a skipped row in no run (never in a manifest, never resumed).
                cur.execute(
                    """
                    INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version,
                        to_version, status, operation, run_name, wave, namespace, release_name, requested_by,
                        chart_version, left_out, error, completed_at, ring, components, image_repository,
                        target_digest, rollback_digest)
                    SELECT %s, t.customer_id, %s, t.from_version, %s,
                           CASE WHEN t.left_out IS NULL THEN 'pending' ELSE 'skipped' END, 'upgrade',
                           CASE WHEN t.left_out IS NULL THEN %s END, t.wave,
                           t.namespace, t.release_name, %s, t.chart_version, t.left_out, t.detail,
                           CASE WHEN t.left_out IS NOT NULL THEN NOW() END, t.ring, t.components, t.repository,
                           t.target_digest, t.rollback_digest
                      FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::text[], %s::text[], %s::text[],
                                  %s::text[], %s::text[], %s::jsonb[], %s::text[], %s::text[], %s::text[])
                           AS t(customer_id, from_version, wave, namespace, release_name, chart_version, left_out, detail,
                                ring, components, repository, target_digest, rollback_digest)
                    """,
                    (
                        upgrade_id,
                        component,
                        to_version,
                        execution_name,
                        requested_by,
                        [r.customer_id for r in rows],
                        [r.from_version for r in rows],
                        [r.wave for r in rows],
                        [r.namespace for r in rows],
                        [r.release_name for r in rows],
                        [r.chart_version for r in rows],
                        [r.left_out for r in rows],
                        [r.detail for r in rows],
                        [r.ring for r in rows],
                        [None if r.components is None else Jsonb(r.components) for r in rows],
                        [r.image_repository for r in rows],
                        [r.target_digest for r in rows],
                        [r.rollback_digest for r in rows],
                    ),
                )
                if within is not None:
                    within(cur, upgrade_id)
                return upgrade
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "system_upgrades_one_active_per_component":
                active = self.active_upgrade_for(component)
                which = f" (upgrade {active['id']}, status {active['status']})" if active else ""
                raise UpgradeAlreadyActive(
                    f"an upgrade of component '{component}' is already pending, running or awaiting "
                    f"continue{which}; wait for it to finish or abort it"
                ) from exc
            raise

    def delete_upgrade(self, upgrade_id: int) -> None:
        """Undo a recorded upgrade whose execution could not be started (its rows cascade)."""
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM system_upgrades WHERE id = %s AND status = 'pending'", (upgrade_id,))

    def request_abort(
        self,
        upgrade_id: int,
        reason: str,
        *,
        aborted_by: str | None,
        rollback: bool,
        fail_gate: Callable[[str], None],
        release_windows: Callable[[list[str]], object] | None = None,
    ) -> tuple[UpgradeRecord, list[RunRecord]] | None:
        """Stop the upgrade's active runs: its own execution and any rollback run of it.

        Writes each run's stop_reason under an exclusive lock of its row (see `upgrader.rollout.leases` for
        why that makes the abort airtight); running customers finish. A waiting gate (the canary's
        approval or a bake) is failed before the commit, so the execution moves on at once.
        Returns (the upgrade, the runs stopped), or None when nothing of it is active.
        (A run whose execution is already gone is ended by the caller: see `upgrader.rollout.reconciliation`.)

        A run waiting for its customers' maintenance windows (WaitForWindows): its task token is taken
        (cleared) in the same transaction and handed to `release_windows` after the commit, so the run
        goes on at once, finds the abort and ends; its waiting customers are skipped with the abort's
        reason (`upgrader.rollout.windows.WindowRepository.store_run_token` explains why no token escapes).
        """
        windows: list[str] = []
        result = self._request_abort(upgrade_id, reason, aborted_by=aborted_by, rollback=rollback,
                                     fail_gate=fail_gate, windows=windows)  # fmt: skip
        if windows and release_windows is not None:
            release_windows(windows)
        return result

    def _request_abort(
        self, upgrade_id: int, reason: str, *, aborted_by: str | None, rollback: bool,
        fail_gate: Callable[[str], None], windows: list[str],
    ) -> tuple[UpgradeRecord, list[RunRecord]] | None:  # fmt: skip
        with self._db.transaction() as cur:
            upgrade = lock_upgrade(cur, upgrade_id, _GatedUpgrade)
            upgrade_active = upgrade.status in ACTIVE_UPGRADE_STATUSES and not str(
                upgrade.halt_reason or ""
            ).startswith("aborted")
            cur.execute(
                """
                SELECT run_name FROM upgrade_runs
                 WHERE upgrade_id = %s AND status = 'running' AND stop_reason IS NULL AND (kind = 'rollback' OR %s)
                 ORDER BY run_name
                """,
                (upgrade_id, upgrade_active),
            )
            gates = [run["run_name"] for run in cur.fetchall()]
            # Close each run's stop gate: wait for the lease transactions inside (each creates its Job, a
            # few bounded Kubernetes calls); longer than other lock waits, still within API Gateway's 29 s.
            cur.execute("SET LOCAL lock_timeout = '25s'")
            cur.execute("SET LOCAL statement_timeout = '26s'")
            close_stop_gates(cur, gates)
            stopped = select(
                cur, RunRecord,
                f"""
                UPDATE upgrade_runs SET stop_reason = %s, updated_at = NOW()
                 WHERE upgrade_id = %s AND status = 'running' AND stop_reason IS NULL
                   AND (kind = 'rollback' OR %s)
                RETURNING {_RUN}
                """,
                (reason, upgrade_id, upgrade_active),
            )  # fmt: skip
            if not upgrade_active and not stopped:
                return None
            if upgrade_active:
                row = select_returned(
                    cur, UpgradeRecord,
                    f"""
                    UPDATE system_upgrades SET halt_reason = %s, task_token = NULL, gate = NULL, gate_until = NULL,
                           updated_at = NOW(),
                           parameters = parameters
                               || jsonb_build_object('abortRollback', %s::boolean, 'abortedBy', %s::text)
                     WHERE id = %s RETURNING {_UPGRADE}
                    """,
                    (reason, rollback, aborted_by, upgrade_id),
                )  # fmt: skip
                aborted_events(cur, row.id, reason, aborted_by, rollback, stopped, f"aborted:{row.execution_name}")
                tokens = take_window_tokens(cur, upgrade_id)
                if upgrade.task_token:
                    fail_gate(upgrade.task_token)
                windows.extend(tokens)
                return row, stopped
            runs = sorted(r.run_name for r in stopped)
            aborted_events(cur, upgrade.id, reason, aborted_by, rollback, stopped, f"aborted:{','.join(runs)}")
            return upgrade, stopped

    # ---------------------------------------------------------------- canary gate
    def release_gate(
        self, upgrade_id: int, continued_by: str | None, send: Callable[[str], None]
    ) -> UpgradeRecord | None:
        """Atomically move awaiting_continue -> in_progress and call send(token) before committing.

        The row lock lets one caller win, so a second /continue never sends a second callback;
        if send() fails the transaction rolls back and the gate stays open for another try.
        """
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT task_token FROM system_upgrades
                 WHERE id = %s AND status = 'awaiting_continue' AND task_token IS NOT NULL
                   FOR NO KEY UPDATE
                """,
                (upgrade_id,),
            )
            locked = cur.fetchone()
            if locked is None:
                return None
            row = select_returned(
                cur, UpgradeRecord,
                f"""
                UPDATE system_upgrades SET status = 'in_progress', task_token = NULL,
                       continued_at = NOW(), continued_by = %s, updated_at = NOW()
                 WHERE id = %s RETURNING {_UPGRADE}
                """,
                (continued_by, upgrade_id),
            )  # fmt: skip
            cur.execute(
                "SELECT EXTRACT(EPOCH FROM (NOW() - created_at)) AS waited FROM event_outbox WHERE event_key = %s",
                (f"gate:{row.execution_name}:{row.current_wave}:approval",),
            )
            opened = cur.fetchone()
            events.upgrade_event(
                cur, events.GATE_CONTINUED, upgrade_id, f"gate-continued:{row.execution_name}:{row.current_wave}",
                {"gate": {"kind": "approval", "wave": row.current_wave, "continuedBy": continued_by,
                          "waitedSeconds": round(float(opened["waited"]), 3) if opened else None}},
            )  # fmt: skip
            send(locked["task_token"])
            return row
