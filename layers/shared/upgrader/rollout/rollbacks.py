"""Rollback requests: which customers an upgrade changed, and rollback rows for them.

Whether a customer can be rolled back is decided from what its upgrade recorded from the release
itself (the component's version before and after helm), never from the row's status alone: a
customer whose helm upgrade succeeded and whose health check then failed is `failed` and still
changed; one whose helm failed and whose `--atomic` restored the release was not changed.

A rollback restores only the upgrade's component (every component of a release train, in one helm
operation), to that customer's own previous version. What
the release changed since (another component's upgrade) is kept. A later upgrade of the SAME
component on that customer is never reverted behind its back: the rollback is refused with a 409
naming it (roll that one back first).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from upgrader.infra.db import Database, Row, columns, one_row, select, select_returned
from upgrader.infra.errors import CustomerNotInUpgrade, UpgradeNotFound, WrongState
from upgrader.infra.vocabulary import ACTIVE_UPGRADE_STATUSES
from upgrader.rollout.run_records import LogRecord

_LOG = columns(LogRecord)

# Did the upgrade row <t> change its release? From what was read from the release before and after
# helm (a train's row: any of its components); when helm ran but its result was never read, assume it did (the rollback re-reads the release);
# rows recorded before releases were read: when they completed.
_CHANGED = """
CASE WHEN {t}.components IS NOT NULL AND {t}.revision_after IS NOT NULL
          THEN EXISTS (SELECT 1 FROM jsonb_each({t}.components) e
                        WHERE e.value -> 'after' IS DISTINCT FROM e.value -> 'before')
     WHEN {t}.version_after IS NOT NULL THEN {t}.version_after IS DISTINCT FROM {t}.version_before
     WHEN {t}.revision_before IS NOT NULL THEN {t}.job_name IS NOT NULL
     ELSE {t}.status = 'completed'
END"""

# The components a row <t> sets: its train's, or its one component.
_SETS = """(CASE WHEN {t}.components IS NULL THEN ARRAY[{t}.component]
             ELSE ARRAY(SELECT jsonb_object_keys({t}.components)) END)"""

# One row per upgrade row of the upgrade (or of one customer): what it changed and what happened since.
_CANDIDATES = f"""
SELECT u.*,
       {_CHANGED.format(t="u")} AS changed,
       (u.status = 'rolled_back' OR EXISTS (
            SELECT 1 FROM customer_upgrade_logs r
             WHERE r.operation = 'rollback' AND r.status = 'completed'
               AND (r.rollback_of = u.id
                    OR (r.rollback_of IS NULL AND r.upgrade_id = u.upgrade_id AND r.customer_id = u.customer_id))
       )) AS rolled_back,
       EXISTS (SELECT 1 FROM customer_upgrade_logs r
                WHERE r.operation = 'rollback' AND r.status IN ('pending', 'in_progress')
                  AND r.upgrade_id = u.upgrade_id AND r.customer_id = u.customer_id) AS rollback_open,
       later.upgrade_id AS later_upgrade_id, later.to_version AS later_version, later.status AS later_status
  FROM customer_upgrade_logs u
  LEFT JOIN LATERAL (
       SELECT v.upgrade_id, v.to_version, v.status FROM customer_upgrade_logs v
        WHERE v.customer_id = u.customer_id AND v.operation = 'upgrade' AND v.id > u.id
          AND {_SETS.format(t="v")} && {_SETS.format(t="u")}
          AND (v.status IN ('pending', 'in_progress')
               OR (v.status <> 'rolled_back'
                   AND {_CHANGED.format(t="v")}
                   AND NOT EXISTS (SELECT 1 FROM customer_upgrade_logs r
                                    WHERE r.rollback_of = v.id AND r.operation = 'rollback'
                                      AND r.status = 'completed')))
        ORDER BY v.id DESC LIMIT 1
  ) later ON TRUE
 WHERE u.upgrade_id = %(id)s AND u.operation = 'upgrade'
   AND (%(customer)s::text IS NULL OR u.customer_id = %(customer)s)
   AND (%(wave)s::int IS NULL OR u.wave = %(wave)s)
"""


@dataclass(frozen=True)
class LeftOut:
    customer_id: str
    reason: str


def why_not(candidate: Row) -> str | None:
    """Why this customer's change cannot be rolled back now; None when it can."""
    customer = candidate["customer_id"]
    if candidate["status"] in ("pending", "in_progress"):
        return f"the upgrade of customer '{customer}' is still {candidate['status']}; roll it back once it has finished"
    if candidate["rolled_back"]:
        return f"customer '{customer}' is already rolled back for upgrade {candidate['upgrade_id']}"
    if candidate["rollback_open"]:
        return f"customer '{customer}' is being rolled back for upgrade {candidate['upgrade_id']}"
    if not candidate["changed"]:
        return (
            f"the upgrade of customer '{customer}' ended '{candidate['status']}' without changing its release "
            f"({candidate['component']} still at {candidate['version_before'] or candidate['from_version']}), "
            "so there is nothing to roll back"
        )
    if candidate["later_upgrade_id"] is not None:
        state = candidate["later_status"]
        what = " + ".join(candidate.get("components") or {}) or candidate["component"]
        return (
            f"customer '{customer}''s {what} was upgraded again since, by upgrade "
            f"{candidate['later_upgrade_id']} ({candidate['later_version']}, {state}); roll that upgrade back "
            "first, so no later change is reverted behind its back"
        )
    return None


@dataclass(frozen=True, slots=True)
class RollbackTarget:
    """What a rollback of one customer would restore: its component (every component of a train), to these
    versions."""

    customer_id: str
    changes: dict[str, str]


def restores(upgraded: Row) -> dict[str, dict[str, str | None]] | None:
    """A train's rollback row: each component from what the upgrade left to what the release held before it
    (what the deploy planned where the release was not read), with the upgrade's `rollbackDigest` as its
    `targetDigest` when it restores the version that digest was resolved for (as `target_digest` is taken for
    the row's own component). None: not a train."""
    train = upgraded.get("components")
    if not train:
        return None
    back: dict[str, dict[str, str | None]] = {}
    for c, v in train.items():
        back[c] = {"from": v.get("after") or v.get("to"), "to": v.get("before") or v.get("from")}
        if v.get("rollbackDigest") and back[c]["to"] == v.get("from"):
            back[c]["targetDigest"] = v["rollbackDigest"]
    return back


def _target(candidate: Row) -> RollbackTarget | None:
    back = restores(candidate)
    if back is not None:
        changes = {c: str(v["to"]) for c, v in back.items() if v["to"]}
        return RollbackTarget(candidate["customer_id"], changes) if changes else None
    version = candidate["version_before"] or candidate["from_version"]
    return RollbackTarget(candidate["customer_id"], {candidate["component"]: version}) if version else None


class RollbackRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_rollback(self, upgrade_id: int, customer_id: str, *, requested_by: str | None) -> LogRecord:
        """Record a rollback of one customer of an upgrade, with its own run (pending; its execution runs it).

        Raises CustomerNotInUpgrade, or WrongState with the reason (`why_not`).
        """
        try:
            with self._db.transaction() as cur:
                cur.execute(
                    "SELECT id FROM customer_upgrade_logs WHERE upgrade_id = %s AND customer_id = %s"
                    " AND operation = 'upgrade' FOR NO KEY UPDATE",
                    (upgrade_id, customer_id),
                )
                if cur.fetchone() is None:
                    raise CustomerNotInUpgrade(f"customer '{customer_id}' is not part of upgrade {upgrade_id}")
                cur.execute(_CANDIDATES, {"id": upgrade_id, "customer": customer_id, "wave": None})
                candidate = one_row(cur)
                reason = why_not(candidate)
                if reason:
                    raise WrongState(reason)
                log_id = _insert_rollback_row(cur, candidate, run_name=None, wave=0, requested_by=requested_by)
                run_name = f"rollback-{upgrade_id}-{log_id}"
                row = select_returned(cur, LogRecord,
                                      f"UPDATE customer_upgrade_logs SET run_name = %s WHERE id = %s RETURNING {_LOG}",
                                      (run_name, log_id))  # fmt: skip
                insert_run(cur, run_name, upgrade_id, "rollback", "customer", requested_by)
                return row
        except psycopg.errors.UniqueViolation as exc:
            raise WrongState(f"customer '{customer_id}' is already being rolled back") from exc

    def create_upgrade_rollback(
        self, upgrade_id: int, *, requested_by: str | None, run_name: str, scope: str = "upgrade",
        wave: int | None = None,
    ) -> tuple[list[LogRecord], list[LeftOut]]:  # fmt: skip
        """Record a rollback of every customer the upgrade changed, last wave first, and its run.

        Returns (rows to roll back, customers left out with the reason). Refused while the upgrade is
        still active (abort it with rollback instead); `scope="abort"` is the abort's own rollback run,
        recorded by the run that ends the upgrade; `scope="wave"` (with `wave`, 0-based) the same for only the
        customers of that wave (an analysis fail with autoRollback: the waves that passed keep the new version).
        """
        if (scope == "wave") != (wave is not None):
            raise ValueError("a rollback of one wave (scope 'wave') names its wave, and only it does")
        with self._db.transaction() as cur:
            cur.execute("SELECT status FROM system_upgrades WHERE id = %s FOR NO KEY UPDATE", (upgrade_id,))
            upgrade = cur.fetchone()
            if upgrade is None:
                raise UpgradeNotFound(f"upgrade {upgrade_id} not found")
            if upgrade["status"] in ACTIVE_UPGRADE_STATUSES:
                raise WrongState(
                    f"upgrade {upgrade_id} is still {upgrade['status']}; abort it with "
                    '{"rollback": true} to stop it and roll back what it changed'
                )
            cur.execute(_CANDIDATES + " ORDER BY u.wave DESC, u.id",
                        {"id": upgrade_id, "customer": None, "wave": wave})  # fmt: skip
            candidates = cur.fetchall()
            if not candidates:
                return [], []
            last_wave = max(int(c["wave"]) for c in candidates)
            chosen: list[Row] = []
            left_out: list[LeftOut] = []
            for candidate in candidates:
                if not candidate["changed"] or candidate["rolled_back"] or candidate["status"] == "skipped":
                    continue  # nothing of this customer to undo: not worth a line
                reason = why_not(candidate)
                if reason:
                    left_out.append(LeftOut(candidate["customer_id"], reason))
                    continue
                chosen.append(candidate)
            rows = _insert_rollback_rows(cur, upgrade_id, chosen, run_name=run_name, last_wave=last_wave,
                                         requested_by=requested_by)  # fmt: skip
            if rows:
                execution = run_name.removesuffix("-rollback") if scope in ("abort", "wave") else run_name
                insert_run(cur, run_name, upgrade_id, "rollback", scope, requested_by, execution_name=execution,
                           wave=wave)  # fmt: skip
            return rows, left_out

    def rollback_targets(self, upgrade_id: int, customer_id: str | None = None) -> list[RollbackTarget]:
        """What a rollback request would restore now, read before anything is recorded: the customers
        `create_rollback` / `create_upgrade_rollback` would accept."""
        with self._db.transaction() as cur:
            cur.execute(_CANDIDATES, {"id": upgrade_id, "customer": customer_id, "wave": None})
            found = [_target(c) for c in cur.fetchall() if c["status"] != "skipped" and why_not(c) is None]
            return [t for t in found if t is not None]

    def delete_run(self, run_name: str) -> None:
        """Undo recorded rollback rows (and their run) whose execution could not be started."""
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM customer_upgrade_logs WHERE run_name = %s AND operation = 'rollback' AND status = 'pending'",
                (run_name,),
            )
            cur.execute("DELETE FROM upgrade_runs WHERE run_name = %s AND kind = 'rollback'", (run_name,))


def insert_run(
    cur: psycopg.Cursor[Row], run_name: str, upgrade_id: int, kind: str, scope: str, requested_by: str | None,
    *, execution_name: str | None = None, attempt: int = 1, wave: int | None = None,
) -> None:  # fmt: skip
    """Record a run (one execution, or an abort's or a failed wave's rollback inside the upgrade's execution)."""
    cur.execute(
        """
        INSERT INTO upgrade_runs (run_name, execution_name, upgrade_id, kind, scope, requested_by, attempt, wave)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_name) DO NOTHING
        """,
        (run_name, execution_name or run_name, upgrade_id, kind, scope, requested_by, attempt, wave),
    )


def _insert_rollback_row(
    cur: psycopg.Cursor[Row], upgraded: Row, *, run_name: str | None, wave: int, requested_by: str | None
) -> int:
    """The rollback row of one upgrade row; returns its id."""
    cur.execute(
        """
        INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version, to_version,
               status, operation, run_name, wave, namespace, release_name, requested_by, rollback_of, components,
               attempt, target_digest)
        VALUES (%(upgrade)s::int, %(customer)s::text, %(component)s, %(from)s, %(to)s::text, 'pending', 'rollback',
                %(run)s, %(wave)s, %(namespace)s, %(release)s, %(who)s, %(of)s, %(components)s,
                (SELECT count(*) + 1 FROM customer_upgrade_logs
                  WHERE upgrade_id = %(upgrade)s::int AND customer_id = %(customer)s::text
                    AND operation = 'rollback'),
                (SELECT u.rollback_digest FROM customer_upgrade_logs u WHERE u.id = %(of)s AND u.from_version::text = %(to)s::text))
        RETURNING id
        """,
        {
            "upgrade": upgraded["upgrade_id"],
            "customer": upgraded["customer_id"],
            "component": upgraded["component"],
            "from": upgraded["version_after"] or upgraded["to_version"],
            "to": upgraded["version_before"] or upgraded["from_version"] or "previous",
            "run": run_name,
            "wave": wave,
            "namespace": upgraded["namespace"],
            "release": upgraded["release_name"],
            "who": requested_by,
            "of": upgraded["id"],
            "components": _jsonb(restores(upgraded)),
        },
    )
    return int(one_row(cur)["id"])


def _insert_rollback_rows(
    cur: psycopg.Cursor[Row], upgrade_id: int, upgraded: list[Row], *, run_name: str, last_wave: int,
    requested_by: str | None,
) -> list[LogRecord]:  # fmt: skip
    """`_insert_rollback_row` for many customers of one upgrade in one statement (last wave first).

    A fleet's rollback is one INSERT of N rows, not N statements; each row's attempt counts the
    customer's earlier rollback rows of the upgrade, read in one pass over the upgrade's rows."""
    if not upgraded:
        return []
    return select(
        cur, LogRecord,
        f"""
        INSERT INTO customer_upgrade_logs (upgrade_id, customer_id, component, from_version, to_version,
               status, operation, run_name, wave, namespace, release_name, requested_by, rollback_of, components,
               attempt, target_digest)
        SELECT %(upgrade)s::int, t.customer_id, t.component, t.from_version, t.to_version, 'pending', 'rollback',
               %(run)s, t.wave, t.namespace, t.release_name, %(who)s, t.rollback_of, t.train, COALESCE(prior.n, 0) + 1,
               (SELECT u.rollback_digest FROM customer_upgrade_logs u
                 WHERE u.id = t.rollback_of AND u.from_version = t.to_version)
          FROM unnest(%(customers)s::text[], %(components)s::text[], %(froms)s::text[], %(tos)s::text[],
                      %(waves)s::int[], %(namespaces)s::text[], %(releases)s::text[], %(ofs)s::int[],
                      %(trains)s::jsonb[])
               WITH ORDINALITY AS t(customer_id, component, from_version, to_version, wave, namespace,
                                    release_name, rollback_of, train, position)
          LEFT JOIN (SELECT r.customer_id, count(*) AS n FROM customer_upgrade_logs r
                      WHERE r.upgrade_id = %(upgrade)s::int AND r.operation = 'rollback'
                      GROUP BY r.customer_id) prior ON prior.customer_id = t.customer_id
         ORDER BY t.position
        RETURNING {_LOG}
        """,
        {
            "upgrade": upgrade_id,
            "run": run_name,
            "who": requested_by,
            "customers": [u["customer_id"] for u in upgraded],
            "components": [u["component"] for u in upgraded],
            "froms": [u["version_after"] or u["to_version"] for u in upgraded],
            "tos": [u["version_before"] or u["from_version"] or "previous" for u in upgraded],
            "waves": [last_wave - int(u["wave"]) for u in upgraded],
            "namespaces": [u["namespace"] for u in upgraded],
            "releases": [u["release_name"] for u in upgraded],
            "ofs": [u["id"] for u in upgraded],
            "trains": [_jsonb(restores(u)) for u in upgraded],
        },
    )  # fmt: skip


def _jsonb(value: dict[str, dict[str, str | None]] | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)
