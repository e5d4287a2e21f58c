"""SQL of the customer inventory: reading customers, changing them through the API (audited), the fleet
counts, and the candidates a deploy plans over. Each public method is one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from psycopg.types.json import Jsonb

from upgrader.contract.customer_models import CustomerOperation, CustomerPatch, parse_timestamp
from upgrader.contract.models import iso
from upgrader.fleet.customer_records import CustomerEventRecord, CustomerRecord, PinRecord
from upgrader.infra.components import component_names
from upgrader.infra.db import Database, Row, columns, select, select_one
from upgrader.infra.errors import CustomerNotFound, InvalidValue, RingFromLabel, WrongState
from upgrader.rollout.selection import Candidate


@dataclass(frozen=True)
class CustomerFilter:
    status: str | None = None
    drift: bool | None = None
    pinned: bool | None = None
    labels: dict[str, str] | None = None
    component: str | None = None
    version: str | None = None
    ring: str | None = None  # customers in this ring (none stored: the default ring)
    ring_order: tuple[str, ...] = ()  # the rings, first to last: a stored ring outside it is the default


# A CustomerRecord: the customer's columns, its id as customer_id, and the versions its release holds.
_CUSTOMER = (
    "c.id AS customer_id, " + columns(CustomerRecord, "c", but=("customer_id", "versions")) + ", "
    "COALESCE((SELECT jsonb_object_agg(v.component, v.version) FROM customer_component_versions v"
    " WHERE v.customer_id = c.id), '{}'::jsonb) AS versions"
)
_PIN = columns(PinRecord, but=("expired",)) + ", expires_at <= NOW() AS expired"
# the customer's history shows its log rows as they are: the answer's model is their record
_OPERATION = columns(CustomerOperation, but=("upgrade_id",)) + ", upgrade_id::text AS upgrade_id"
_EVENT = columns(CustomerEventRecord, but=("sync_id", "at")) + ", sync_id::text AS sync_id, created_at AS at"


class InventoryRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------------------------ reading
    def deploy_candidates(
        self, component: str, ring_of: Callable[[str | None], str | None] = lambda stored: stored
    ) -> list[Candidate]:
        """Every customer with its version of `component` and its pin of it in force (and every component's
        version, pin and image repository, for a release train), in wave order
        (customers labelled canary=true first, then by id); `ring_of` turns its stored ring into its ring
        (`RingOrder.ring_of`: none stored is the order's default)."""
        with self._db.transaction() as cur:
            found = select(
                cur, Candidate,
                """
                SELECT c.id AS customer_id, c.namespace, c.release_name, c.status AS customer_status,
                       COALESCE(c.labels, '{}'::jsonb) AS labels, c.chart_version, c.maintenance_window, c.ring,
                       v.version AS current_version,
                       p.version AS pin_version, p.reason AS pin_reason,
                       p.expires_at AS pin_expires_at, p.pinned_by,
                       COALESCE((SELECT jsonb_object_agg(a.component, a.version) FROM customer_component_versions a
                                  WHERE a.customer_id = c.id), '{}'::jsonb) AS versions,
                       COALESCE((SELECT jsonb_object_agg(q.component, jsonb_build_object(
                                         'version', q.version, 'reason', q.reason, 'pinnedBy', q.pinned_by,
                                         'expiresAt', to_char(q.expires_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')))
                                  FROM customer_pins q WHERE q.customer_id = c.id AND q.expires_at > NOW()),
                                '{}'::jsonb) AS pins,
                       COALESCE((SELECT jsonb_object_agg(r.component, r.repository) FROM customer_image_repositories r
                                  WHERE r.customer_id = c.id), '{}'::jsonb) AS image_repositories,
                       COALESCE((SELECT jsonb_object_agg(r.component, r.digest) FROM customer_image_repositories r
                                   JOIN customer_component_versions a
                                     ON a.customer_id = r.customer_id AND a.component = r.component
                                  WHERE r.customer_id = c.id AND r.digest IS NOT NULL
                                    AND a.version = r.digest_version), '{}'::jsonb) AS image_digests
                  FROM customers c
                  LEFT JOIN customer_component_versions v ON v.customer_id = c.id AND v.component = %(component)s
                  LEFT JOIN customer_pins p ON p.customer_id = c.id AND p.component = %(component)s
                                           AND p.expires_at > NOW()
                 ORDER BY (c.labels->>'canary' = 'true') IS TRUE DESC, c.id
                """,
                {"component": component},
            )  # fmt: skip
        return [replace(c, ring=ring_of(c.ring)) for c in found]

    def list_customers(self, where: CustomerFilter, *, after: str | None, limit: int) -> list[CustomerRecord]:
        """One page of customers by id (`after`: the last id of the previous page)."""
        with self._db.transaction() as cur:
            return select(
                cur,
                CustomerRecord,
                f"""
                SELECT {_CUSTOMER}
                  FROM customers c
                 WHERE (%(status)s::text IS NULL OR c.status = %(status)s)
                   AND (%(drift)s::boolean IS NULL OR (c.drift IS NOT NULL) = %(drift)s)
                   AND c.labels @> %(labels)s
                   AND (COALESCE(%(component)s::text, %(version)s::text) IS NULL OR EXISTS (
                          SELECT 1 FROM customer_component_versions v
                           WHERE v.customer_id = c.id
                             AND (%(component)s::text IS NULL OR v.component = %(component)s)
                             AND (%(version)s::text IS NULL OR v.version = %(version)s)))
                   AND (%(pinned)s::boolean IS NULL OR EXISTS (
                          SELECT 1 FROM customer_pins p WHERE p.customer_id = c.id AND p.expires_at > NOW())
                        = %(pinned)s)
                   AND (%(ring)s::text IS NULL OR (CASE WHEN c.ring = ANY(%(order)s::text[]) THEN c.ring
                                                        ELSE %(default)s END) = %(ring)s)
                   AND (%(after)s::text IS NULL OR c.id > %(after)s)
                 ORDER BY c.id
                 LIMIT %(limit)s
                """,
                {
                    "status": where.status, "drift": where.drift, "pinned": where.pinned,
                    "labels": Jsonb(where.labels or {}), "component": where.component, "version": where.version,
                    "after": after, "limit": limit, "ring": where.ring, "order": list(where.ring_order),
                    "default": where.ring_order[-1] if where.ring_order else None,
                },
            )  # fmt: skip

    def get_customer(self, customer_id: str) -> CustomerRecord:
        with self._db.transaction() as cur:
            row = select_one(
                cur, CustomerRecord, f"SELECT {_CUSTOMER} FROM customers c WHERE c.id = %s", (customer_id,)
            )
            if row is None:
                raise CustomerNotFound(f"customer {customer_id} not found")
            return row

    def pins_of(self, customer_ids: Sequence[str]) -> dict[str, list[PinRecord]]:
        with self._db.transaction() as cur:
            found = select(
                cur,
                PinRecord,
                f"SELECT {_PIN} FROM customer_pins WHERE customer_id = ANY(%s) ORDER BY customer_id, component",
                (list(customer_ids),),
            )
        pins: dict[str, list[PinRecord]] = {}
        for pin in found:
            pins.setdefault(pin.customer_id, []).append(pin)
        return pins

    def operations(self, customer_id: str, limit: int) -> tuple[int, list[CustomerOperation]]:
        """Its rows in every upgrade (upgrades, rollbacks, skips), newest first."""
        with self._db.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM customer_upgrade_logs WHERE customer_id = %s", (customer_id,))
            total = int((cur.fetchone() or {"n": 0})["n"])
            query = f"SELECT {_OPERATION} FROM customer_upgrade_logs WHERE customer_id = %s ORDER BY id DESC LIMIT %s"
            return total, select(cur, CustomerOperation, query, (customer_id, limit))

    def events(self, customer_id: str, limit: int) -> tuple[int, list[CustomerEventRecord]]:
        with self._db.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM customer_events WHERE customer_id = %s", (customer_id,))
            total = int((cur.fetchone() or {"n": 0})["n"])
            query = f"SELECT {_EVENT} FROM customer_events WHERE customer_id = %s ORDER BY id DESC LIMIT %s"
            return total, select(cur, CustomerEventRecord, query, (customer_id, limit))

    def fleet(self) -> dict[str, Any]:
        """Customers by status, drift and pins in force, each component's versions and the rings as stored
        (existing customers)."""
        with self._db.transaction() as cur:
            cur.execute("SELECT ring, count(*) AS n FROM customers WHERE status <> 'decommissioned' GROUP BY ring")
            by_ring = [(r["ring"], int(r["n"])) for r in cur.fetchall()]
            cur.execute("SELECT status, count(*) AS n FROM customers GROUP BY status")
            by_status = {r["status"]: int(r["n"]) for r in cur.fetchall()}
            cur.execute(
                """
                SELECT count(*) FILTER (WHERE c.drift IS NOT NULL) AS drift,
                       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM customer_pins p
                                                       WHERE p.customer_id = c.id AND p.expires_at > NOW())) AS pinned
                  FROM customers c WHERE c.status <> 'decommissioned'
                """
            )
            marks = cur.fetchone() or {"drift": 0, "pinned": 0}
            cur.execute(
                """
                SELECT v.component, v.version, count(*) AS n
                  FROM customer_component_versions v JOIN customers c ON c.id = v.customer_id
                 WHERE c.status <> 'decommissioned'
                 GROUP BY v.component, v.version
                 ORDER BY v.component, count(*) DESC, v.version
                """
            )
            versions = cur.fetchall()
            return {"byStatus": by_status, "drift": int(marks["drift"]), "pinned": int(marks["pinned"]),
                    "versions": versions, "byStoredRing": by_ring}  # fmt: skip

    # ----------------------------------------------------------------------------------- changing
    def patch_customer(
        self, customer_id: str, patch: CustomerPatch, actor: str | None
    ) -> tuple[CustomerRecord, dict[str, Any]]:
        """Apply a validated patch in one transaction; record what changed (before/after), who and when.

        Returns (the customer's row, the changes; empty when the patch changed nothing)."""
        fields = patch.model_fields_set
        changes: dict[str, Any] = {}
        with self._db.transaction() as cur:
            query = f"SELECT {_CUSTOMER} FROM customers c WHERE c.id = %s FOR NO KEY UPDATE"
            row = select_one(cur, CustomerRecord, query, (customer_id,))
            if row is None:
                raise CustomerNotFound(f"customer {customer_id} not found")
            if patch.status is not None and patch.status != row.status:
                if row.status == "decommissioned":
                    raise WrongState(
                        f"customer {customer_id} is decommissioned (its namespace or release is gone); a sync makes it "
                        "active again when it comes back"
                    )
                changes["status"] = {"before": row.status, "after": patch.status}
            if patch.labels is not None:
                merged = {**row.labels, **{k: v for k, v in patch.labels.items() if v is not None}}
                for key in [k for k, v in patch.labels.items() if v is None]:
                    merged.pop(key, None)
                if merged != row.labels:
                    changes["labels"] = {"before": row.labels, "after": merged}
            if "maintenance_window" in fields:
                window = patch.maintenance_window.model_dump() if patch.maintenance_window else None
                if window != row.maintenance_window:
                    changes["maintenanceWindow"] = {"before": row.maintenance_window, "after": window}
            if "ring" in fields and patch.ring != row.ring:
                if row.ring_from_label:
                    raise RingFromLabel(
                        f"customer {customer_id}'s ring {row.ring} comes from its namespace's ring label, which wins at "
                        "every sync: change the label instead"
                    )
                changes["ring"] = {"before": row.ring, "after": patch.ring}
            if patch.acknowledge_drift and row.drift is not None:
                changes["drift"] = {"before": row.drift, "after": None}
            if patch.pins is not None:
                changes.update(self._pin_changes(cur, row, patch, actor))
            if not changes:
                return row, changes
            cur.execute(
                """
                UPDATE customers SET status = %(status)s, labels = %(labels)s, maintenance_window = %(window)s,
                       ring = %(ring)s,
                       drift = CASE WHEN %(ack)s THEN NULL ELSE drift END,
                       drift_detected_at = CASE WHEN %(ack)s THEN NULL ELSE drift_detected_at END,
                       updated_at = NOW(), updated_by = %(actor)s
                 WHERE id = %(id)s
                """,
                {
                    "status": changes.get("status", {}).get("after", row.status),
                    "labels": Jsonb(changes.get("labels", {}).get("after", row.labels)),
                    "window": _jsonb_or_none(changes.get("maintenanceWindow", {}).get("after", row.maintenance_window)),
                    "ring": changes.get("ring", {}).get("after", row.ring),
                    "ack": "drift" in changes,
                    "actor": actor,
                    "id": customer_id,
                },
            )
            cur.execute(
                "INSERT INTO customer_events (customer_id, kind, detail, actor) VALUES (%s, 'updated', %s, %s)",
                (customer_id, Jsonb(changes), actor),
            )
            updated = select_one(
                cur, CustomerRecord, f"SELECT {_CUSTOMER} FROM customers c WHERE c.id = %s", (customer_id,)
            )
            assert updated is not None
            return updated, changes

    def _pin_changes(self, cur: Any, row: CustomerRecord, patch: CustomerPatch, actor: str | None) -> dict[str, Any]:
        assert patch.pins is not None
        cur.execute("SELECT * FROM customer_pins WHERE customer_id = %s", (row.customer_id,))
        current = {p["component"]: p for p in cur.fetchall()}
        changes: dict[str, Any] = {}
        for component in [c for c in component_names() if c in patch.pins.model_fields_set]:
            wanted = getattr(patch.pins, component)
            before = _pin_view(current.get(component))
            if wanted is None:
                if component in current:
                    cur.execute(
                        "DELETE FROM customer_pins WHERE customer_id = %s AND component = %s",
                        (row.customer_id, component),
                    )
                    changes[f"pins.{component}"] = {"before": before, "after": None}
                continue
            version = wanted.version or row.versions.get(component)
            if version is None:
                raise InvalidValue(
                    f"pins.{component}.version",
                    f"customer {row.customer_id} has no recorded {component} version; name the version to pin",
                )
            expires = parse_timestamp(wanted.expires_at).replace(tzinfo=None)
            after = {"version": version, "reason": wanted.reason, "expiresAt": wanted.expires_at}
            if (
                before is not None
                and {k: before[k] for k in ("version", "reason")} == {k: after[k] for k in ("version", "reason")}
                and current[component]["expires_at"] == expires
            ):
                continue
            cur.execute(
                """
                INSERT INTO customer_pins (customer_id, component, version, reason, expires_at, pinned_by)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (customer_id, component) DO UPDATE SET version = EXCLUDED.version,
                    reason = EXCLUDED.reason, expires_at = EXCLUDED.expires_at, pinned_by = EXCLUDED.pinned_by,
                    pinned_at = NOW()
                """,
                (row.customer_id, component, version, wanted.reason, expires, actor),
            )
            changes[f"pins.{component}"] = {"before": before, "after": after}
        return changes


def _pin_view(pin: Row | None) -> dict[str, Any] | None:
    if pin is None:
        return None
    return {"version": pin["version"], "reason": pin["reason"], "expiresAt": iso(pin["expires_at"])}


def _jsonb_or_none(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)
