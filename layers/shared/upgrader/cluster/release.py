"""Helm's release records, read the way Helm 3 stores them (pure: no kubernetes import).

Helm 3 keeps every revision of a release in a Secret ``sh.helm.release.v1.<release>.v<revision>``
(type ``helm.sh/release.v1``, labels owner=helm, name, status, version). The Secret's ``release``
key holds base64(gzip(JSON of the release)); the Kubernetes API adds its own base64 around Secret
data, so what the API answers is base64(base64(gzip(JSON))). In the JSON, ``config`` holds the
user-supplied values as nested maps (what ``helm get values`` prints), ``chart.values`` the chart's
defaults and ``chart.metadata.version`` the chart version.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from upgrader.cluster.bluegreen import SLOTS, Slots, component_slots, slot_tag_key
from upgrader.infra.components import DIGEST, digest_key, sibling_key, tag_version

SECRET_PREFIX = "sh.helm.release.v1."  # noqa: S105 - a name, not a password
SECRET_TYPE = "helm.sh/release.v1"  # noqa: S105
_GZIP_MAGIC = b"\x1f\x8b\x08"
# A release record larger than this (decompressed) is refused rather than decoded (a zip bomb guard).
MAX_RELEASE_BYTES = 16 * 1024 * 1024


class ReleaseDecodeError(ValueError):
    """A release Secret whose content is not a Helm release record."""


def secret_name(release: str, revision: int) -> str:
    return f"{SECRET_PREFIX}{release}.v{revision}"


def decode_release_data(data: str) -> dict[str, Any]:
    """The release JSON from a Secret's ``data.release`` as the Kubernetes API answers it.

    Accepts Helm's encoding (base64 of gzip of JSON, inside the API's own base64) and, like Helm
    itself, an uncompressed JSON payload.
    """
    try:
        helm_encoded = base64.b64decode(data, validate=True)
        raw = base64.b64decode(helm_encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReleaseDecodeError(f"release data is not base64: {exc}") from exc
    if raw.startswith(_GZIP_MAGIC):
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = decompressor.decompress(raw, MAX_RELEASE_BYTES)
            if decompressor.unconsumed_tail:
                raise ReleaseDecodeError(f"release record larger than {MAX_RELEASE_BYTES} bytes")
        except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
            raise ReleaseDecodeError(f"release data is not valid gzip: {exc}") from exc
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise ReleaseDecodeError(f"release data is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ReleaseDecodeError("release data is not a JSON object")
    return parsed


def encode_release_data(record: Mapping[str, Any]) -> str:
    """The inverse of `decode_release_data` (what the API server would answer for a Secret)."""
    helm_encoded = base64.b64encode(gzip.compress(json.dumps(record).encode("utf-8")))
    return base64.b64encode(helm_encoded).decode("ascii")


def value_at(values: Mapping[str, Any] | None, dotted_key: str) -> Any:
    """``values["api"]["image"]["tag"]`` for ``api.image.tag``; None when any part is missing."""
    node: Any = values
    for part in dotted_key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """One revision of a Helm release, decoded."""

    name: str
    namespace: str
    revision: int
    status: str
    chart_name: str | None
    chart_version: str | None
    app_version: str | None
    config: dict[str, Any] = field(default_factory=dict)  # user-supplied values (nested)
    chart_values: dict[str, Any] = field(default_factory=dict)  # the chart's defaults (nested)
    description: str | None = None
    manifest: str | None = field(default=None, repr=False)  # the rendered manifest (its Secrets: redaction)

    def secret_values(self) -> frozenset[str]:
        """What this revision holds that must never be shown: its Secrets' values and the user values at
        secret-like keys (`upgrader.infra.redaction.secret_values_of`). Parsed on demand (discovery never asks)."""
        from upgrader.infra.redaction import secret_values_of

        return secret_values_of({"manifest": self.manifest, "config": self.config})

    def value(self, dotted_key: str) -> tuple[Any, str | None]:
        """(value, source): from the user values, else from the chart's defaults; (None, None) if neither."""
        found = value_at(self.config, dotted_key)
        if found is not None:
            return found, "values"
        found = value_at(self.chart_values, dotted_key)
        if found is not None:
            return found, "chart-defaults"
        return None, None

    def version_of(self, dotted_key: str) -> str | None:
        """An image tag (or any scalar) at `dotted_key`, as a string; None when the release has none."""
        found, _ = self.value(dotted_key)
        if found is None or isinstance(found, Mapping | list):
            return None
        return str(found)

    def slots_of(self, component: str) -> Slots | None:
        """The component's blue-green slots when the release follows that contract (docs/blue-green.md),
        from the chart's defaults coalesced with the user values; None for a release that runs the
        component in one Deployment."""
        return component_slots(
            _coalesced(_mapping(self.chart_values.get(component)), _mapping(self.config.get(component)))
        )

    def component_version(self, component: str, dotted_key: str) -> tuple[str | None, str | None]:
        """(version, source) of a component: the active slot's version on a blue-green release (source
        "active-slot"), else the image tag at `dotted_key` (source "values" or "chart-defaults")."""
        slots = self.slots_of(component)
        if slots is not None:
            return slots.version, "active-slot"
        version = self.version_of(dotted_key)
        # a pinned tag value (`v1.2.0@sha256:…`, docs/images.md) is that version: the digest only makes it exact
        return (tag_version(version) if version else version), (
            self.value(dotted_key)[1] if version is not None else None
        )

    def declares_digest(self, component: str, dotted_tag_key: str) -> bool:
        """Whether the release takes the component's digest apart from its tag (docs/images.md, the chart contract's
        form 2): a string at the digest key beside the tag key (`api.image.digest`; on a blue-green release beside
        each slot's tag), which the chart declares by shipping it empty in its defaults (or a deploy set since)."""
        keys = [slot_tag_key(component, s) for s in SLOTS] if self.slots_of(component) is not None else [dotted_tag_key]
        return all(isinstance(self.value(digest_key(key))[0], str) for key in keys)

    def digest_of(self, dotted_tag_key: str) -> str | None:
        """The digest the release pins its image to: its digest value when set (form 2), else the part of its tag
        value after `@` (form 1); None when neither names one, or not a digest (the values are the customer's)."""
        found = self.version_of(digest_key(dotted_tag_key)) or (self.version_of(dotted_tag_key) or "").partition("@")[2]
        return found if DIGEST.fullmatch(found) else None

    def image_repository(self, dotted_tag_key: str) -> str | None:
        """The image repository the release names beside the component's tag (`api.image.tag` ->
        `api.image.repository`), from the user values, else the chart's defaults; None when it names none."""
        return self.version_of(sibling_key(dotted_tag_key, "repository"))


def parse_release(record: Mapping[str, Any], *, status_label: str | None = None) -> ReleaseRecord:
    """A `ReleaseRecord` from a decoded release JSON. The Secret's status label wins over the JSON's
    ``info.status`` (Helm updates both; the label is what Helm's own queries select on)."""
    info = _mapping(record.get("info"))
    chart = _mapping(record.get("chart"))
    metadata = _mapping(chart.get("metadata"))
    config = _mapping(record.get("config"))
    defaults = _mapping(chart.get("values"))
    try:
        revision = int(record.get("version") or 0)
    except (TypeError, ValueError) as exc:
        raise ReleaseDecodeError(f"release version is not a number: {record.get('version')!r}") from exc
    name = record.get("name")
    if not isinstance(name, str) or not name:
        raise ReleaseDecodeError("release record has no name")
    return ReleaseRecord(
        name=name,
        namespace=str(record.get("namespace") or ""),
        revision=revision,
        status=str(status_label or info.get("status") or "unknown"),
        chart_name=_str_or_none(metadata.get("name")),
        chart_version=_str_or_none(metadata.get("version")),
        app_version=_str_or_none(metadata.get("appVersion")),
        config=dict(config),
        chart_values=dict(defaults),
        description=_str_or_none(info.get("description")),
        manifest=record["manifest"] if isinstance(record.get("manifest"), str) else None,
    )


def _coalesced(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of one subtree: user values over the chart's defaults, maps merged deeply."""
    merged = dict(defaults)
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _coalesced(merged[key], value)
        else:
            merged[key] = value
    return merged


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
