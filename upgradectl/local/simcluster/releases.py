"""Helm 3's release storage (the Secrets driver), written the way Helm writes it.

Each revision is a Secret ``sh.helm.release.v1.<release>.v<revision>`` of type ``helm.sh/release.v1``,
labelled owner=helm, name, status, version and createdAt (on create) or modifiedAt (on update: Helm's
Update replaces the labels). ``data.release`` holds Helm's encoding of the release, base64(gzip(JSON)),
which the API then base64-encodes once more, as it does any Secret data.

This encoder is written independently of the product's decoder (``upgrader.cluster.release``); the
tests prove it with the real helm binary (``helm history``, ``helm get values``, ``helm status``).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import gzip
import json
import time
from collections.abc import Mapping
from typing import Any

from upgradectl.local.simcluster.identity import new_uid
from upgradectl.local.simcluster.store import ObjectStore
from upgradectl.local.simcluster.values import deep_copy

SECRETS = "v1/secrets"
SECRET_TYPE = "helm.sh/release.v1"  # noqa: S105 - a type name, not a password
PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})

Record = dict[str, Any]


def go_time(moment: dt.datetime | None = None) -> str:
    """A timestamp as Go's time.Time marshals it in JSON: RFC 3339 with the fraction's trailing zeros
    trimmed (RFC3339Nano), in UTC."""
    moment = (moment or dt.datetime.now(tz=dt.UTC)).astimezone(dt.UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def ansic(stamp: str) -> str:
    """A record timestamp as helm prints LAST DEPLOYED (Go's time.ANSIC: "Mon Jan _2 15:04:05 2006")."""
    moment = dt.datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    return f"{moment:%a %b} {moment.day:>2} {moment:%H:%M:%S %Y}"


def new_record(
    *,
    name: str,
    namespace: str,
    version: int,
    status: str,
    chart: Mapping[str, Any],
    config: Mapping[str, Any],
    manifest: str,
    description: str,
    first_deployed: str | None = None,
    notes: str = "",
) -> Record:
    """A Helm 3 release (``release.Release`` as Go marshals it: empty notes and hooks are omitted)."""
    now = go_time()
    info = {
        "first_deployed": first_deployed or now,
        "last_deployed": now,
        "deleted": "",  # Helm's zero time marshals as ""
        "description": description,
        "status": status,
    }
    if notes:
        info["notes"] = notes
    return {
        "name": name,
        "info": info,
        "chart": copy.deepcopy(dict(chart)),
        "config": deep_copy(config),
        "manifest": manifest,
        "version": version,
        "namespace": namespace,
    }


def encode_release(record: Mapping[str, Any]) -> str:
    """Helm's encodeRelease: base64(gzip(JSON)), the value Helm puts in ``data.release``."""
    compressed = gzip.compress(json.dumps(record, separators=(",", ":")).encode("utf-8"), compresslevel=9, mtime=0)
    return base64.b64encode(compressed).decode("ascii")


def decode_release(helm_encoded: str) -> Record:
    """The inverse of `encode_release` (Helm's decodeRelease), for the simulation's own reads."""
    raw = base64.b64decode(helm_encoded)
    if raw[:3] == b"\x1f\x8b\x08":
        raw = gzip.decompress(raw)
    decoded: Record = json.loads(raw)
    return decoded


def secret_name(release: str, version: int) -> str:
    return f"sh.helm.release.v1.{release}.v{version}"


def status_of(record: Mapping[str, Any]) -> str:
    return str((record.get("info") or {}).get("status", ""))


class ReleaseStore:
    """Release records by (namespace, release) -> revision, and their Secrets in the API server.

    The records are the source of truth for the simulated helm (indexed: no scan of the API's objects);
    every write also stores the Secret exactly as Helm's Secrets driver would. Runs on the API server's loop.
    """

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects
        self._releases: dict[tuple[str, str], dict[int, Record]] = {}

    def releases(self) -> list[tuple[str, str]]:
        """(namespace, release) of every release with a revision."""
        return [key for key, revisions in self._releases.items() if revisions]

    def history(self, namespace: str, release: str) -> list[Record]:
        """Every revision, oldest first (copies)."""
        revisions = self._releases.get((namespace, release)) or {}
        return [copy.deepcopy(revisions[number]) for number in sorted(revisions)]

    def get(self, namespace: str, release: str, version: int) -> Record | None:
        found = (self._releases.get((namespace, release)) or {}).get(version)
        return copy.deepcopy(found) if found is not None else None

    def last(self, namespace: str, release: str) -> Record | None:
        revisions = self._releases.get((namespace, release)) or {}
        return copy.deepcopy(revisions[max(revisions)]) if revisions else None

    def deployed(self, namespace: str, release: str) -> list[Record]:
        """Revisions in status deployed, newest first (Helm's DeployedAll)."""
        return [r for r in reversed(self.history(namespace, release)) if status_of(r) == "deployed"]

    def create(self, record: Record, *, max_history: int = 0) -> None:
        """Helm's Storage.Create: with a history limit, first make room by deleting the oldest
        revisions (never the newest deployed one); then a new Secret, labelled createdAt."""
        if max_history > 0:
            self._remove_least_recent(str(record["namespace"]), str(record["name"]), max_history - 1)
        self._write(record, {"createdAt": str(int(time.time()))})

    def _remove_least_recent(self, namespace: str, release: str, keep: int) -> None:
        """Helm's removeLeastRecent: oldest first, until `keep` revisions are left."""
        revisions = self._releases.get((namespace, release)) or {}
        if len(revisions) <= keep:
            return
        deployed = self.deployed(namespace, release)
        protected = int(deployed[0]["version"]) if deployed else None
        doomed: list[int] = []
        for number in sorted(revisions):
            if len(revisions) - len(doomed) == keep:
                break
            if number != protected:
                doomed.append(number)
        for number in doomed:
            self._delete_revision(namespace, release, number)

    def update(self, record: Record) -> None:
        """Helm's Update: the Secret replaced, labelled modifiedAt."""
        self._write(record, {"modifiedAt": str(int(time.time()))})

    def delete(self, namespace: str, release: str) -> None:
        """Every revision of the release, gone (as after ``helm uninstall``)."""
        for number in sorted(self._releases.get((namespace, release)) or {}):
            self._delete_revision(namespace, release, number)
        self._releases.pop((namespace, release), None)

    def _delete_revision(self, namespace: str, release: str, number: int) -> None:
        (self._releases.get((namespace, release)) or {}).pop(number, None)
        if self._objects.get(SECRETS, namespace, secret_name(release, number)) is not None:
            self._objects.delete(SECRETS, namespace, secret_name(release, number))

    def _write(self, record: Record, stamp: dict[str, str]) -> None:
        namespace, release, number = str(record["namespace"]), str(record["name"]), int(record["version"])
        self._releases.setdefault((namespace, release), {})[number] = copy.deepcopy(record)
        name = secret_name(release, number)
        labels = {**stamp, "name": release, "owner": "helm", "status": status_of(record), "version": str(number)}
        uid, created = new_uid(), dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": SECRET_TYPE,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "creationTimestamp": created,
                "labels": labels,
            },
            # The API answers Secret data base64-encoded: base64(Helm's base64(gzip(JSON))).
            "data": {"release": base64.b64encode(encode_release(record).encode("ascii")).decode("ascii")},
        }
        self._objects.put(SECRETS, secret)  # an update keeps the object's identity (uid, creationTimestamp)
