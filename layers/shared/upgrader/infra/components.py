"""The components of a customer's stack, each defined once with every fact the code needs about it.

Everything that lists the components asks this registry: the API's request and response models and
their OpenAPI enums (`upgrader.contract.models.Component`, one pin field each in `PinsPatch`), the query
parameters, the cluster configuration (`ClusterConfig`: chart reference and image tag key), discovery,
the fleet view, the metrics' series, the CLI's choices and the local stack's simulated chart and demo
fleet. `template.yaml` names them in `ChartRefs`' description; tests/unit/test_components.py keeps it equal.

The registry is read when asked, never copied at import time into a constant a test could not reach:
`REGISTRY.add(...)` in a test (then `REGISTRY.remove(...)`) gives the whole product a fifth component.
Standard library only (the cluster adapter, the repository and the metrics import it without pydantic).
A component's image values are written here and read back here too: `image_values` (what every helm Job sets,
rolling or blue-green: the pinned tag value `v1.2.0@sha256:…`, or the tag and the digest apart for a chart that
declares the digest value) and `tag_version` (its version, what every check compares).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from upgrader.infra.registry import Registry

DEFAULT_CHART_REF = "oci://registry.example.com/charts/customer-stack"
SAMPLE_IMAGE_REGISTRY = "registry.example.com"  # where the sample chart's images say they come from
DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")  # an image digest, as the OCI spec writes it


@dataclass(frozen=True)
class SampleChart:
    """What the local stack's sample chart (customer-stack 1.4.0 and 1.5.0) ships for a component."""

    port_name: str
    port: int
    older_tag: str  # customer-stack 1.4.0's default image tag; the demo fleet's lagging customers run it
    newer_tag: str  # customer-stack 1.5.0's; the demo fleet's current version
    tag_from_chart: bool = False  # an up-to-date demo release leaves this tag to the chart's defaults


@dataclass(frozen=True)
class ComponentSpec:
    """One component: its name (the API's word, the pin field, the metrics' dimension, the chart's values
    key), where Helm keeps its image tag, its default chart, and the sample chart's facts."""

    name: str
    sample: SampleChart
    chart_ref: str = DEFAULT_CHART_REF

    @property
    def image_tag_key(self) -> str:
        """The Helm value key holding the image tag (`helm --set-string <key>=<version>`); settings may override."""
        return f"{self.name}.image.tag"

    def sample_image_repository(self, registry: str = SAMPLE_IMAGE_REGISTRY) -> str:
        """The sample chart's `<name>.image.repository`: on registry.example.com by default, or the same path
        on the local stack's real registry (upgradectl/local/registry.py)."""
        return f"{registry}/{self.name}"

    @property
    def pin_field(self) -> str:
        """Its field in a pins patch (PATCH /api/customers/{id} `pins`)."""
        return self.name


REGISTRY: Registry[ComponentSpec] = Registry(
    "component",
    (
        ComponentSpec("api", SampleChart("http", 8080, older_tag="v1.0.3", newer_tag="v1.1.0")),
        ComponentSpec("dashboard", SampleChart("http", 8080, older_tag="v1.8.2", newer_tag="v1.9.0")),
        ComponentSpec("exporter", SampleChart("metrics", 9100, older_tag="v0.9.1", newer_tag="v1.0.0")),
        ComponentSpec(
            "mosquitto", SampleChart("mqtt", 1883, older_tag="2.0.15", newer_tag="2.0.18", tag_from_chart=True)
        ),
    ),
)


def component_names() -> tuple[str, ...]:
    """Every component's name, in the registry's order."""
    return REGISTRY.names()


def default_image_tag_keys() -> dict[str, str]:
    """component -> the Helm value key of its image tag."""
    return {spec.name: spec.image_tag_key for spec in REGISTRY}


def default_chart_refs() -> dict[str, str]:
    """component -> the chart its releases run."""
    return {spec.name: spec.chart_ref for spec in REGISTRY}


def in_words(names: tuple[str, ...] | None = None) -> str:
    """The names as a sentence lists them: `api, dashboard, exporter and mosquitto`."""
    names = component_names() if names is None else names
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def sibling_key(tag_key: str, leaf: str) -> str:
    """The values key next to a tag key: `api.image.tag` -> `api.image.repository` (leaf "repository");
    where a release names the image repository (and an optional digest) of the component whose tag is there."""
    parent, dot, _ = tag_key.rpartition(".")
    return f"{parent}{dot}{leaf}"


def digest_key(tag_key: str) -> str:
    """The optional digest value beside a tag key (`api.image.tag` -> `api.image.digest`), which a chart declares by
    shipping it empty in its defaults and renders as `repository@digest` when set (docs/images.md)."""
    return sibling_key(tag_key, "digest")


def image_values(tag_key: str, version: str, digest: str | None, *, digest_declared: bool) -> list[tuple[str, str]]:
    """The values (key, `--set-string` value) that install one image: the chart contract for digests' form 2 when
    the release's chart declares the digest value (the tag plain, the digest beside it, "" when none was resolved),
    else form 1 (the pinned tag value). The empty digest is written, never left out: helm's
    `--reset-then-reuse-values` keeps every value an earlier revision was given, so an earlier deploy's digest would
    stay and install its image under the new tag."""
    if digest_declared:
        return [(tag_key, version), (digest_key(tag_key), digest or "")]
    return [(tag_key, pinned_tag(version, digest))]


def pinned_tag(version: str | None, digest: str | None) -> str:
    """The chart's tag value that installs exactly the resolved image: `v1.2.0@sha256:…` (docs/images.md, the
    chart contract for digests); the tag alone when no digest was resolved."""
    return f"{version}@{digest}" if digest else str(version)


def tag_version(value: str) -> str:
    """The version a tag value names, read back from a release: the part before `@` (`v1.2.0@sha256:…`, as
    `pinned_tag` writes it, is `v1.2.0`: the digest only makes it exact)."""
    return value.split("@", 1)[0]
