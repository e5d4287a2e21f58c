"""SQL of inventory syncs: their rows (requested, running, finished) and what each writes.

Locks. A chunk's customers are locked FOR NO KEY UPDATE (in id order) while the sync decides and
writes; the helm operations that change versions do so under the customer's lease, which the sync
reads under that lock: a leased customer's versions are not touched, so the sync and an operation
never wait on each other's rows in opposite orders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from upgrader.contract.customer_models import SyncSummary
from upgrader.fleet.discovery import Assessment, KnownCustomer
from upgrader.infra.db import Database, Row, columns, one_row, select_one
from upgrader.infra.timestamps import iso
from upgrader.notifications import events

# A sync still pending or running after this long died with its Lambda (15 minutes at most): the next
# request marks it failed and starts a new one.
STALE_SYNC_SECONDS = 20 * 60
ACTIVE = ("pending", "running")

Decide = Callable[[dict[str, KnownCustomer], dict[str, str]], list[Assessment]]


_SYNC = columns(SyncSummary, but=("sync_id",)) + ", id::text AS sync_id"


class SyncRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------------------ the sync's row
    def request(self, trigger: str, requested_by: str | None, *, running: bool = False) -> tuple[SyncSummary, bool]:
        """A new sync (pending, or running for a worker that runs it itself), or the one already active.

        Returns (the sync, created). One sync at a time: a partial unique index decides between
        concurrent requests. A sync active for longer than a Lambda can run is failed first.
        """
        self._fail_stale()
        try:
            with self._db.transaction() as cur:
                created = select_one(
                    cur,
                    SyncSummary,
                    f"""
                    INSERT INTO inventory_syncs (status, trigger, requested_by, started_at)
                    VALUES (%s, %s, %s, CASE WHEN %s THEN NOW() END) RETURNING {_SYNC}
                    """,
                    ("running" if running else "pending", trigger, requested_by, running),
                )
                assert created is not None
                return created, True
        except psycopg.errors.UniqueViolation:
            with self._db.transaction() as cur:
                query = f"SELECT {_SYNC} FROM inventory_syncs WHERE status = ANY(%s) ORDER BY id DESC LIMIT 1"
                active = select_one(cur, SyncSummary, query, (list(ACTIVE),))
            if active is None:  # it ended meanwhile: ask again
                return self.request(trigger, requested_by, running=running)
            return active, False

    def _fail_stale(self) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE inventory_syncs SET status = 'failed', completed_at = NOW(), updated_at = NOW(),
                       error = 'did not finish: its worker ended without recording a result'
                 WHERE status = ANY(%s) AND updated_at < NOW() - make_interval(secs => %s)
                """,
                (list(ACTIVE), STALE_SYNC_SECONDS),
            )

    def claim(self, sync_id: int) -> SyncSummary | None:
        """pending -> running, once (a second delivery of the same request gets None)."""
        with self._db.transaction() as cur:
            return select_one(
                cur,
                SyncSummary,
                f"""
                UPDATE inventory_syncs SET status = 'running', started_at = NOW(), updated_at = NOW()
                 WHERE id = %s AND status = 'pending' RETURNING {_SYNC}
                """,
                (sync_id,),
            )

    def discard(self, sync_id: int, error: str) -> None:
        """A requested sync whose worker could not be started."""
        self.fail(sync_id, error)

    def finish(self, sync_id: int, counts: dict[str, int], problems: list[dict[str, Any]]) -> SyncSummary:
        with self._db.transaction() as cur:
            finished = select_one(
                cur,
                SyncSummary,
                f"""
                UPDATE inventory_syncs SET status = 'completed', counts = %s, problems = %s, completed_at = NOW(),
                       updated_at = NOW()
                 WHERE id = %s RETURNING {_SYNC}
                """,
                (Jsonb(counts), Jsonb(problems), sync_id),
            )
            assert finished is not None
            return finished

    def fail(self, sync_id: int, error: str) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE inventory_syncs SET status = 'failed', error = %s, completed_at = NOW(), updated_at = NOW()
                 WHERE id = %s AND status = ANY(%s)
                """,
                (error[:2000], sync_id, list(ACTIVE)),
            )

    def get(self, sync_id: int) -> SyncSummary | None:
        with self._db.transaction() as cur:
            return select_one(cur, SyncSummary, f"SELECT {_SYNC} FROM inventory_syncs WHERE id = %s", (sync_id,))

    def latest(self) -> SyncSummary | None:
        with self._db.transaction() as cur:
            return select_one(cur, SyncSummary, f"SELECT {_SYNC} FROM inventory_syncs ORDER BY id DESC LIMIT 1")

    # ----------------------------------------------------------------------------- what a sync writes
    def current_customers(self) -> int:
        with self._db.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM customers WHERE status <> 'decommissioned'")
            return int(one_row(cur)["n"])

    def apply(self, sync_id: int, namespaces: Sequence[str], ids: Sequence[str], decide: Decide) -> list[Assessment]:
        """In one transaction: lock and read the customers of these namespaces (and the owners of these
        ids), let `decide` compare them with what was read, write its decisions; return them."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                SELECT c.id, c.namespace, c.release_name, c.status, c.release_revision, c.release_error, c.ring,
                       c.ring_from_label,
                       EXISTS (SELECT 1 FROM customer_leases l WHERE l.customer_id = c.id) AS leased,
                       COALESCE((SELECT jsonb_object_agg(v.component, v.version) FROM customer_component_versions v
                                  WHERE v.customer_id = c.id), '{}'::jsonb) AS versions
                  FROM customers c
                 WHERE c.namespace = ANY(%s) OR c.id = ANY(%s)
                 ORDER BY c.id
                   FOR NO KEY UPDATE OF c
                """,
                (list(namespaces), list(ids)),
            )
            rows = cur.fetchall()
            wanted = set(namespaces)
            known = {
                r["namespace"]: KnownCustomer(
                    r["id"],
                    r["namespace"],
                    r["release_name"],
                    r["status"],
                    dict(r["versions"]),
                    r["release_revision"],
                    r["release_error"],
                    bool(r["leased"]),
                    r["ring"],
                    bool(r["ring_from_label"]),
                )  # fmt: skip
                for r in rows
                if r["namespace"] in wanted
            }
            owners = {r["id"]: r["namespace"] for r in rows}
            decisions = decide(known, owners)
            _write(cur, sync_id, decisions)
            return decisions

    def decommission_unseen(self, sync_id: int) -> int:
        """Every customer (not yet decommissioned) whose namespace this complete sync did not see."""
        with self._db.transaction() as cur:
            cur.execute(
                """
                UPDATE customers SET status = 'decommissioned', decommissioned_at = NOW(), updated_at = NOW()
                 WHERE status <> 'decommissioned' AND last_seen_sync_id IS DISTINCT FROM %s
                RETURNING id, namespace
                """,
                (sync_id,),
            )
            gone = cur.fetchall()
            cur.executemany(
                "INSERT INTO customer_events (customer_id, kind, detail, sync_id) VALUES (%s, 'decommissioned', %s, %s)",
                [(r["id"], Jsonb({"reason": f"namespace {r['namespace']} is gone"}), sync_id) for r in gone],
            )
            return len(gone)


def _write(cur: psycopg.Cursor[Row], sync_id: int, decisions: Sequence[Assessment]) -> None:
    added = [d for d in decisions if d.action == "add"]
    cur.executemany(
        """
        INSERT INTO customers (id, namespace, release_name, status, discovered_at, last_seen_at, last_seen_sync_id,
                               chart_version, release_revision)
        VALUES (%s, %s, %s, 'active', NOW(), NOW(), %s, %s, %s)
        ON CONFLICT DO NOTHING
        """,
        [(d.customer_id, d.namespace, d.release.name, sync_id, d.release.chart_version, d.release.revision)
         for d in added if d.release is not None],
    )  # fmt: skip
    seen = [d for d in decisions if d.action not in ("add", "skip")]
    cur.executemany(
        """
        UPDATE customers SET
               status = CASE %(action)s WHEN 'decommission' THEN 'decommissioned' WHEN 'reappear' THEN 'active'
                                        ELSE status END,
               decommissioned_at = CASE %(action)s WHEN 'decommission' THEN NOW() WHEN 'reappear' THEN NULL
                                                   ELSE decommissioned_at END,
               release_name = COALESCE(%(release)s, release_name),
               chart_version = CASE WHEN %(fresh)s THEN %(chart)s ELSE chart_version END,
               release_revision = CASE WHEN %(fresh)s THEN GREATEST(release_revision, %(revision)s)
                                       ELSE release_revision END,
               release_error = CASE WHEN %(action)s = 'unreadable' THEN %(problem)s ELSE NULL END,
               drift = CASE WHEN %(drift)s::jsonb IS NULL THEN drift ELSE COALESCE(drift, '{}'::jsonb) || %(drift)s END,
               drift_detected_at = CASE WHEN %(drift)s::jsonb IS NULL THEN drift_detected_at ELSE NOW() END,
               last_seen_at = NOW(), last_seen_sync_id = %(sync)s, updated_at = NOW()
         WHERE id = %(id)s
        """,
        [
            {
                "id": d.customer_id,
                "action": d.action,
                "sync": sync_id,
                "problem": d.problem,
                "release": d.release.name if d.release else None,
                "fresh": d.release is not None and not d.busy,
                "chart": d.release.chart_version if d.release else None,
                "revision": d.release.revision if d.release else None,
                "drift": Jsonb(_stamped(d.drift)) if d.drift else None,
            }  # fmt: skip
            for d in seen
        ],
    )
    cur.executemany(
        "UPDATE customers SET ring = %s, ring_from_label = %s, updated_at = NOW() WHERE id = %s",
        [(d.ring[0], d.ring[1], d.customer_id) for d in decisions if d.ring is not None and d.action != "skip"],
    )
    cur.executemany(
        """
        INSERT INTO customer_component_versions AS v (customer_id, component, version)
        VALUES (%s, %s, %s)
        ON CONFLICT (customer_id, component) DO UPDATE
           SET previous_version = CASE WHEN v.version IS DISTINCT FROM EXCLUDED.version THEN v.version
                                       ELSE v.previous_version END,
               upgrade_id = CASE WHEN v.version IS DISTINCT FROM EXCLUDED.version THEN NULL ELSE v.upgrade_id END,
               updated_at = CASE WHEN v.version IS DISTINCT FROM EXCLUDED.version THEN NOW() ELSE v.updated_at END,
               version = EXCLUDED.version
         WHERE v.version IS DISTINCT FROM EXCLUDED.version
        """,
        [(d.customer_id, c, v) for d in decisions if d.changed and not d.busy for c, v in sorted(d.versions.items())],
    )
    _write_repositories(cur, [d for d in decisions if d.action != "skip" and d.release is not None and not d.busy])
    for d in seen:
        for component, values in sorted((d.drift or {}).items()):
            events.plain_event(
                cur, events.DRIFT_FOUND, f"drift:{d.customer_id}:{component}:{sync_id}",
                {"customer": {"customerId": d.customer_id, "namespace": d.namespace},
                 "drift": {"component": component, **values}, "syncId": sync_id},
                component=component, customer_id=d.customer_id,
            )  # fmt: skip
    cur.executemany(
        "INSERT INTO customer_events (customer_id, kind, detail, sync_id) VALUES (%s, %s, %s, %s)",
        [
            (d.customer_id, kind, Jsonb(detail), sync_id)
            for d in decisions
            if d.action != "skip"
            for kind, detail in d.events
        ],
    )


def _write_repositories(cur: psycopg.Cursor[Row], fresh: Sequence[Assessment]) -> None:
    """Each component's image repository as the release names it now, and the digest it pins the image to with the
    version it runs (the images' pre-flight asks the registry for them, docs/images.md); a repository the release
    no longer names is forgotten."""
    if not fresh:
        return
    named = [
        (d.customer_id, c, r, d.release.digests.get(c), d.release.versions.get(c) if c in d.release.digests else None)
        for d in fresh if d.release is not None for c, r in sorted(d.release.repositories.items())
    ]  # fmt: skip
    cur.execute(  # one statement per chunk, whatever its size
        """
        INSERT INTO customer_image_repositories AS r (customer_id, component, repository, digest, digest_version)
        SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
        ON CONFLICT (customer_id, component) DO UPDATE
           SET repository = EXCLUDED.repository, digest = EXCLUDED.digest, digest_version = EXCLUDED.digest_version,
               updated_at = NOW()
         WHERE (r.repository, r.digest, r.digest_version) IS DISTINCT FROM
               (EXCLUDED.repository, EXCLUDED.digest, EXCLUDED.digest_version)
        """,
        tuple([n[i] for n in named] for i in range(5)),
    )
    cur.execute(
        "DELETE FROM customer_image_repositories WHERE customer_id = ANY(%s) AND NOT (customer_id || '/' || component = ANY(%s))",
        ([d.customer_id for d in fresh], [f"{n[0]}/{n[1]}" for n in named]),
    )


def _stamped(drift: dict[str, dict[str, str]]) -> dict[str, Any]:
    now = iso(datetime.now(UTC))
    return {component: {**values, "detectedAt": now} for component, values in drift.items()}
