"""The components are defined once (upgrader.infra.components); what lists them outside the code is kept equal
to that registry here, and what the code derives from it follows a registration (issue 24, item 1).

The whole-product proof (a fifth component deployed through the API to helm and back): tests/e2e/test_fifth_component.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError
from upgrader.cluster.types import ClusterConfig
from upgrader.contract.models import Component, DeployRequest
from upgrader.infra.components import REGISTRY, ComponentSpec, SampleChart, component_names

from tests.support.template import load_template

ROOT = Path(__file__).resolve().parents[2]
BLUEGREEN_CHART = ROOT / "charts" / "customer-stack-bluegreen"


@pytest.fixture
def fifth() -> Iterator[str]:
    REGISTRY.add(ComponentSpec("broker", SampleChart("amqp", 5672, older_tag="3.12.0", newer_tag="3.13.0")))
    try:
        yield "broker"
    finally:
        REGISTRY.remove("broker")


def test_the_template_names_the_registered_components():
    """Breakage tried: a fifth component registered (the template's ChartRefs description lists four)."""
    description = load_template()["Parameters"]["ChartRefs"]["Description"]
    listed = re.search(r"mapping component \(([^)]*)\)", description)
    assert listed is not None, description
    assert tuple(name.strip() for name in listed.group(1).split(",")) == component_names()


def test_the_blue_green_sample_chart_has_every_registered_component():
    """The repository's blue-green chart (what `blueGreen` deploys are tested against) ranges over the registry's
    components and gives each its values. Breakage tried: a fifth component registered (both lists differ)."""
    values = yaml.safe_load((BLUEGREEN_CHART / "values.yaml").read_text())
    assert tuple(values) == component_names()
    for template in ("deployment.yaml", "service.yaml"):
        text = (BLUEGREEN_CHART / "templates" / template).read_text()
        ranges = re.findall(r"range \$component := list ((?:\"[a-z]+\" ?)+)", text)
        assert ranges and {tuple(re.findall(r'"([a-z]+)"', r)) for r in ranges} == {component_names()}, template


def _errors(adapter: TypeAdapter[Any], value: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(value)
    return [(e["type"], e["msg"]) for e in caught.value.errors()]


@pytest.mark.parametrize("value", ["nope", "API", "", 5, None, ["api"]])
def test_an_unknown_component_is_refused_as_the_literal_of_the_names_would_refuse_it(value):
    """The API's answer to a bad component did not change when the Literal became the registry's type.
    Breakage tried: the literal_error message written without quotes ('api, dashboard, ...')."""
    names = component_names()
    literal: TypeAdapter[Any] = TypeAdapter(Literal[names])  # type: ignore[valid-type,arg-type]
    assert _errors(TypeAdapter(Component), value) == _errors(literal, value)


def test_a_registered_component_is_accepted_and_written_into_the_document(fifth):
    """Breakage tried: the JSON Schema's enum written once at import (the fifth is missing from it)."""
    request = DeployRequest.model_validate({"component": fifth, "version": "3.14.0", "strategy": "all"})
    assert request.component == fifth
    assert DeployRequest.model_json_schema()["properties"]["component"]["enum"] == [*component_names()]
    assert fifth in component_names()


def test_the_cluster_configuration_knows_exactly_the_registered_components(fifth):
    """Breakage tried: the validator's known components a fixed dict of four (the fifth's key refused)."""
    config = ClusterConfig(mode="url", api_url="http://127.0.0.1:1", image_tag_keys={fifth: "broker.tag"})
    assert config.image_tag_keys[fifth] == "broker.tag" and config.image_tag_keys["api"] == "api.image.tag"
    assert set(config.chart_refs) == set(component_names())
    with pytest.raises(ValidationError, match="unknown components: nats"):
        ClusterConfig(mode="url", api_url="http://127.0.0.1:1", image_tag_keys={"nats": "nats.image.tag"})
