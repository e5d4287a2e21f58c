"""The chart registry the simulated helm pulls from: chart versions, their defaults and templates.

A Job's chart reference is e.g. ``oci://registry.example.com/charts/customer-stack``: the last path
segment names the chart. ``--version V`` picks that version (unknown: helm's "not found" error), no
``--version`` the newest one, as ``helm upgrade`` does against an OCI registry.

The chart's templates are real Go templates (``write_chart_dir`` writes a chart directory that the
real helm renders); ``render_manifest`` renders the same documents in Python for the release record.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from upgrader.infra.components import REGISTRY, component_names, in_words

from upgradectl.local.simcluster.values import Values, coalesce_values, deep_copy

DEFAULT_CHART_NAME = "customer-stack"
# The blue-green sample chart (docs/blue-green.md): its templates are the repository's own chart files.
BLUEGREEN_CHART_NAME = "customer-stack-bluegreen"
BLUEGREEN_CHART_DIR = Path(__file__).resolve().parents[3] / "charts" / BLUEGREEN_CHART_NAME
SLOTS = ("blue", "green")
SLOT_LABEL = "upgrades.example.com/slot"
ACTIVE_LABEL = "upgrades.example.com/active"
_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")

HELPERS_TEMPLATE = """\
{{- define "customer-stack.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "customer-stack.labels" -}}
app.kubernetes.io/name: {{ .component }}
{{ include "customer-stack.selector" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version }}
{{- end }}
"""

DEPLOYMENT_TEMPLATE = """\
{{- range $component := list COMPONENT_NAMES }}
{{- with (index $.Values $component) }}
{{- $scope := dict "root" $ "component" $component }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $.Release.Name }}-{{ $component }}
  labels:
    {{- include "customer-stack.labels" $scope | nindent 4 }}
spec:
  replicas: {{ .replicaCount }}
  selector:
    matchLabels:
      {{- include "customer-stack.selector" $scope | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "customer-stack.selector" $scope | nindent 8 }}
    spec:
      containers:
        - name: {{ $component }}
          image: "{{ .image.repository }}{{ if .image.digest }}@{{ .image.digest }}{{ else }}:{{ .image.tag }}{{ end }}"
          ports:
            - name: {{ .service.portName }}
              containerPort: {{ .service.port }}
              protocol: TCP
{{- end }}
{{- end }}
"""

SERVICE_TEMPLATE = """\
{{- range $component := list COMPONENT_NAMES }}
{{- with (index $.Values $component) }}
{{- $scope := dict "root" $ "component" $component }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $.Release.Name }}-{{ $component }}
  labels:
    {{- include "customer-stack.labels" $scope | nindent 4 }}
spec:
  selector:
    {{- include "customer-stack.selector" $scope | nindent 4 }}
  ports:
    - name: {{ .service.portName }}
      port: {{ .service.port }}
      targetPort: {{ .service.portName }}
      protocol: TCP
{{- end }}
{{- end }}
"""


def chart_templates() -> dict[str, str]:
    """The sample chart's templates, ranging over the registered components (upgrader.infra.components)."""
    names = " ".join(f'"{name}"' for name in component_names())
    return {
        "templates/_helpers.tpl": HELPERS_TEMPLATE,
        "templates/deployment.yaml": DEPLOYMENT_TEMPLATE.replace("COMPONENT_NAMES", names),
        "templates/service.yaml": SERVICE_TEMPLATE.replace("COMPONENT_NAMES", names),
    }


def component_defaults(tags: Mapping[str, str], *, digest_value: bool = False) -> Values:
    """Chart default values: per component an image (repository, tag; `digest_value`: an empty digest, which
    declares that the chart takes the digest apart, docs/images.md), replicas and its service port."""
    digest = {"digest": ""} if digest_value else {}
    return {
        spec.name: {
            "image": {"repository": spec.sample_image_repository(), "tag": tags[spec.name]} | digest,
            "replicaCount": 2,
            "service": {"portName": spec.sample.port_name, "port": spec.sample.port},
        }
        for spec in REGISTRY
    }


def bluegreen_chart() -> ChartVersion:
    """charts/customer-stack-bluegreen as the registry serves it: its Chart.yaml, values.yaml and templates,
    read from the repository (the simulated helm renders the same documents, see `_render_bluegreen`)."""
    meta = yaml.safe_load((BLUEGREEN_CHART_DIR / "Chart.yaml").read_text())
    values = yaml.safe_load((BLUEGREEN_CHART_DIR / "values.yaml").read_text())
    templates = {f"templates/{p.name}": p.read_text() for p in sorted((BLUEGREEN_CHART_DIR / "templates").iterdir())}
    return ChartVersion(str(meta["name"]), str(meta["version"]), str(meta["appVersion"]), values,
                        str(meta["description"]), templates)  # fmt: skip


@dataclass(frozen=True)
class Unit:
    """One Deployment a release's values ask for: a component, or a blue-green component's slot."""

    key: str  # "api", or "api-green" (the Deployment is `<release>-<key>`)
    component: str
    slot: str | None
    image: str
    active: bool = True  # blue-green: the slot the component's Service selects


@dataclass(frozen=True)
class ChartVersion:
    """One version of a chart in the registry."""

    name: str
    version: str
    app_version: str
    values: Values = field(default_factory=dict)  # the chart's defaults (values.yaml), nested
    description: str = field(default_factory=lambda: f"One customer's stack: {in_words()}")
    templates: Mapping[str, str] = field(default_factory=chart_templates)

    def metadata(self) -> dict[str, Any]:
        """Chart.yaml as Helm stores it in a release (``chart.metadata``)."""
        return {"name": self.name, "version": self.version, "description": self.description,
                "apiVersion": "v2", "appVersion": self.app_version, "type": "application"}  # fmt: skip

    def record(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The chart as stored in a release record (``chart``): metadata, templates (base64), values.

        `values` replaces the defaults (``helm upgrade --reuse-values`` stores the previous release's
        coalesced values there)."""
        return {
            "metadata": self.metadata(),
            "lock": None,
            "templates": [
                {"name": name, "data": base64.b64encode(text.encode()).decode()}
                for name, text in self.templates.items()
            ],
            "values": deep_copy(self.values if values is None else values),
            "schema": None,
            "files": None,  # a chart without extra files: Go marshals the nil list as null
        }


def default_charts() -> tuple[ChartVersion, ...]:
    """customer-stack 1.4.0 and 1.5.0: 1.5.0's defaults are the fleet's current component versions; and
    customer-stack-bluegreen 2.0.0, the blue-green sample chart with the same versions on its blue slots."""
    older = {spec.name: spec.sample.older_tag for spec in REGISTRY}
    newer = {spec.name: spec.sample.newer_tag for spec in REGISTRY}
    return (
        ChartVersion(DEFAULT_CHART_NAME, "1.4.0", "1.4.0", component_defaults(older)),
        ChartVersion(DEFAULT_CHART_NAME, "1.5.0", "1.5.0", component_defaults(newer)),
        bluegreen_chart(),
    )


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key: numeric major.minor.patch; a pre-release sorts before its release."""
    match = _SEMVER.match(version)
    if match is None:
        return (-1, -1, -1, -1, version)
    major, minor, patch, pre = match.groups()
    return (int(major), int(minor or 0), int(patch or 0), 0 if pre else 1, pre or "")


class ChartNotFound(LookupError):
    """The registry has no such chart (version); the text is helm's error message."""


class ChartCatalog:
    """Chart versions by name, the registry the simulated helm resolves chart references against."""

    def __init__(self, charts: Iterable[ChartVersion] | None = None) -> None:
        self._charts: dict[str, dict[str, ChartVersion]] = {}
        for chart in default_charts() if charts is None else charts:
            self.add(chart)

    def add(self, chart: ChartVersion) -> None:
        self._charts.setdefault(chart.name, {})[chart.version] = chart

    def names(self) -> list[str]:
        return sorted(self._charts)

    def versions(self, name: str = DEFAULT_CHART_NAME) -> list[str]:
        return sorted(self._charts.get(name, {}), key=semver_key)

    def get(self, name: str, version: str | None = None) -> ChartVersion:
        """A chart version (None: the newest). KeyError when unknown."""
        versions = self._charts.get(name) or {}
        if not versions:
            raise KeyError(f"no chart {name!r} in the simulated registry")
        if version is None:
            return versions[max(versions, key=semver_key)]
        if version not in versions:
            raise KeyError(f"no version {version!r} of chart {name!r} in the simulated registry")
        return versions[version]

    def resolve(self, ref: str, version: str | None) -> ChartVersion:
        """What ``helm upgrade <release> <ref> [--version V]`` pulls, or ChartNotFound with helm's text."""
        location = ref.split("://", 1)[-1].rstrip("/")
        name = location.rsplit("/", 1)[-1].split("@", 1)[0]
        versions = self._charts.get(name) or {}
        if version:
            if version in versions:
                return versions[version]
            # an exact version is pulled as a tag: the registry answers 404 (oras: "<ref>:<tag>: not found")
            raise ChartNotFound(f"{location}:{version}: not found")
        if not versions:
            host, _, path = location.partition("/")
            raise ChartNotFound(
                f'GET "https://{host}/v2/{path}/tags/list": response status code 404: name unknown: '
                "repository name not known to registry"
            )
        return versions[max(versions, key=semver_key)]


def render_manifest(chart: Mapping[str, Any], config: Mapping[str, Any], release: str) -> str:
    """The manifest helm renders from a release's chart record and user values: one Service and one
    Deployment per component, Services first (Helm's install order). Same documents as the templates.
    A blue-green chart's values (`<component>.slots`): see `_render_bluegreen`."""
    metadata = chart.get("metadata") or {}
    values = coalesce_values(chart.get("values") or {}, config)
    if any(isinstance((values.get(c) or {}).get("slots"), Mapping) for c in component_names()):
        return _render_bluegreen(metadata, values, release)
    source = metadata.get("name")
    services, deployments = [], []
    for component in component_names():
        mine = values.get(component)
        if not isinstance(mine, Mapping):
            continue
        image, port_name, port, labels, selector = _component_parts(metadata, mine, release, component)
        services += [
            "---", f"# Source: {source}/templates/service.yaml", "apiVersion: v1", "kind: Service", "metadata:",
            f"  name: {release}-{component}", "  labels:", *_indent(labels, 4), "spec:", "  selector:",
            *_indent(selector, 4), "  ports:", f"    - name: {port_name}", f"      port: {port}",
            f"      targetPort: {port_name}", "      protocol: TCP",
        ]  # fmt: skip
        deployments += [
            "---", f"# Source: {source}/templates/deployment.yaml", "apiVersion: apps/v1", "kind: Deployment",
            "metadata:", f"  name: {release}-{component}", "  labels:", *_indent(labels, 4), "spec:",
            f"  replicas: {_text(mine.get('replicaCount'))}", "  selector:", "    matchLabels:",
            *_indent(selector, 6), "  template:", "    metadata:", "      labels:", *_indent(selector, 8),
            "    spec:", "      containers:", f"        - name: {component}",
            f'          image: "{_image(image)}"', "          ports:",
            f"            - name: {port_name}", f"              containerPort: {port}", "              protocol: TCP",
        ]  # fmt: skip
    return "".join(line + "\n" for line in services + deployments)


def _component_parts(
    metadata: Mapping[str, Any], mine: Mapping[str, Any], release: str, component: str
) -> tuple[Mapping[str, Any], str, str, list[str], list[str]]:
    """(image values, port name, port, labels, selector lines) of one component's documents."""
    image, service = mine.get("image") or {}, mine.get("service") or {}
    labels = [
        f"app.kubernetes.io/name: {component}", f"app.kubernetes.io/instance: {release}",
        f"app.kubernetes.io/component: {component}", "app.kubernetes.io/managed-by: Helm",
        f"helm.sh/chart: {metadata.get('name')}-{metadata.get('version')}",
    ]  # fmt: skip
    selector = [f"app.kubernetes.io/instance: {release}", f"app.kubernetes.io/component: {component}"]
    return image, _text(service.get("portName")), _text(service.get("port")), labels, selector


def _render_bluegreen(metadata: Mapping[str, Any], values: Mapping[str, Any], release: str) -> str:
    """charts/customer-stack-bluegreen's documents: per component a Service following the active slot,
    a preview Service and a Deployment per deployed slot (a slot with a tag)."""
    source = metadata.get("name")
    services, previews, deployments = [], [], []
    for component in component_names():
        mine = values.get(component)
        if not isinstance(mine, Mapping):
            continue
        image, port_name, port, labels, selector = _component_parts(metadata, mine, release, component)
        active = str(mine.get("activeSlot") or "blue")
        ports = ["  ports:", f"    - name: {port_name}", f"      port: {port}", f"      targetPort: {port_name}",
                 "      protocol: TCP"]  # fmt: skip
        services += [
            "---", f"# Source: {source}/templates/service.yaml", "apiVersion: v1", "kind: Service", "metadata:",
            f"  name: {release}-{component}", "  labels:", *_indent(labels, 4), "spec:",
            "  # The Service follows the active slot: switching is one value, `<component>.activeSlot`.",
            "  selector:", *_indent(selector, 4), f"    {SLOT_LABEL}: {active}", *ports,
        ]  # fmt: skip
        for slot in SLOTS:
            tag = _text(((mine.get("slots") or {}).get(slot) or {}).get("tag"))
            if tag in ("", "<no value>"):
                continue
            slot_labels = [*labels, f"{SLOT_LABEL}: {slot}"]
            previews += [
                "---", f"# Source: {source}/templates/service.yaml", "apiVersion: v1", "kind: Service", "metadata:",
                f"  name: {release}-{component}-{slot}", "  labels:", *_indent(slot_labels, 4), "spec:",
                "  selector:", *_indent(selector, 4), f"    {SLOT_LABEL}: {slot}", *ports,
            ]  # fmt: skip
            deployments += [
                "---", f"# Source: {source}/templates/deployment.yaml", "apiVersion: apps/v1", "kind: Deployment",
                "metadata:", f"  name: {release}-{component}-{slot}", "  labels:", *_indent(slot_labels, 4),
                f'    {ACTIVE_LABEL}: "{"true" if slot == active else "false"}"', "spec:",
                f"  replicas: {_text(mine.get('replicaCount'))}", "  selector:", "    matchLabels:",
                *_indent(selector, 6), f"      {SLOT_LABEL}: {slot}", "  template:", "    metadata:", "      labels:",
                *_indent(selector, 8), f"        {SLOT_LABEL}: {slot}", "    spec:", "      containers:",
                f"        - name: {component}", f'          image: "{_text(image.get("repository"))}:{tag}"',
                "          ports:", f"            - name: {port_name}", f"              containerPort: {port}", "              protocol: TCP",
            ]  # fmt: skip
    return "".join(line + "\n" for line in services + previews + deployments)


def _indent(lines: list[str], spaces: int) -> list[str]:
    return [" " * spaces + line for line in lines]


def effective_images(chart: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, str]:
    """Deployment key (component, or `<component>-<slot>`) -> the image it runs."""
    return {unit.key: unit.image for unit in workload_units(chart, config)}


def workload_units(chart: Mapping[str, Any], config: Mapping[str, Any]) -> list[Unit]:
    """The Deployments a release's chart and user values ask for: one per component, or on a blue-green
    chart one per deployed slot (a slot with a tag), the active one marked."""
    values = coalesce_values(chart.get("values") or {}, config)
    units = []
    for component in component_names():
        mine = values.get(component)
        if not isinstance(mine, Mapping):
            continue
        image, slots = mine.get("image") or {}, mine.get("slots")
        if not isinstance(slots, Mapping):
            units.append(Unit(component, component, None, _image(image)))
            continue
        active = str(mine.get("activeSlot") or "blue")
        for slot in SLOTS:
            tag = (slots.get(slot) or {}).get("tag")
            if tag not in (None, ""):
                units.append(Unit(f"{component}-{slot}", component, slot, f"{_text(image.get('repository'))}:{_text(tag)}",
                                  active=slot == active))  # fmt: skip
    return units


def _image(image: Mapping[str, Any]) -> str:
    """The sample chart's image: `repository@digest` when its digest value is set, else `repository:tag`."""
    digest, repository = image.get("digest"), _text(image.get("repository"))
    return f"{repository}@{_text(digest)}" if digest else f"{repository}:{_text(image.get('tag'))}"


def _text(value: Any) -> str:
    """A value as Go's template prints it ({{ x }}): no value -> "<no value>", booleans lower-case."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_chart_dir(chart: ChartVersion, parent: Path) -> Path:
    """Write the chart as a directory (Chart.yaml, values.yaml, templates/) that the real helm can load.
    JSON is YAML, so both files are written as JSON."""
    root = parent / chart.name
    (root / "templates").mkdir(parents=True, exist_ok=True)
    (root / "Chart.yaml").write_text(json.dumps(chart.metadata(), indent=2) + "\n")
    (root / "values.yaml").write_text(json.dumps(chart.values, indent=2) + "\n")
    for name, text in chart.templates.items():
        (root / name).write_text(text)
    return root
