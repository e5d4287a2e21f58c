"""The API models' two names for a field: snake_case in Python, camelCase on the wire (issue 24).

The models get their wire names from one `alias_generator` on the base class; these tests walk every model
so that a new one cannot slip out of it: responses serialize exactly the names the OpenAPI document shows
(camelCase, but for the log entries' snake_case column names, which the specification shows as they are),
and requests accept only those names: a Python name sent as a key is an unknown field."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError
from upgrader.contract import customer_models, models, plan_models
from upgrader.contract.base import Model, StrictModel
from upgrader.rollout import compatibility

DOCUMENT = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]
# The one response model whose wire names are snake_case: GET /logs shows the database's column names.
SNAKE_ON_THE_WIRE = {"LogEntry"}


def _models(base: type[Model]) -> list[type[Model]]:
    found = {
        value
        for module in (models, customer_models, plan_models, compatibility)
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, base) and value not in (Model, StrictModel)
    }
    return sorted(found, key=lambda m: m.__name__)


RESPONSES = [m for m in _models(Model) if not issubclass(m, StrictModel)]
REQUESTS = _models(StrictModel)


def _dumped_keys(model: type[Model]) -> set[str]:
    # Every field set (to None: only the keys matter here), serialized as an answer is
    instance = model.model_construct(**dict.fromkeys(model.model_fields))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # None where a string is declared: the serializer warns, the key is kept
        return set(instance.model_dump(mode="json", warnings=False))


def test_the_walk_finds_the_models():
    assert len(RESPONSES) >= 35 and len(REQUESTS) >= 10
    assert {"StatusResponse", "Customer", "RuleView", "LogEntry"} <= {m.__name__ for m in RESPONSES}
    assert {"DeployRequest", "CustomerPatch", "RuleRequest", "PinsPatch"} <= {m.__name__ for m in REQUESTS}


@pytest.mark.parametrize("model", RESPONSES, ids=lambda m: m.__name__)
def test_every_response_serializes_the_documented_camel_case_names(model: type[Model]):
    # Given a response model, every field set
    keys = _dumped_keys(model)
    # Then its JSON keys are the properties the OpenAPI document shows for it
    if model.__name__ in SCHEMAS:
        assert keys == set(SCHEMAS[model.__name__]["properties"])
    # and they are camelCase: no Python (snake_case) name reaches the wire
    if model.__name__ not in SNAKE_ON_THE_WIRE:
        assert [k for k in keys if "_" in k] == []
    # and the Python names are what code builds the model with
    assert set(model.model_fields) == {name for name in model.model_fields if name == name.lower()}


def test_a_response_is_built_by_its_python_names_and_answers_with_the_wire_names():
    view = models.ContinueResponse(message="continued", upgrade_id="7", job_id="upgrade-7-1")
    assert view.model_dump() == {"message": "continued", "upgradeId": "7", "jobId": "upgrade-7-1"}
    assert json.loads(view.model_dump_json()) == view.model_dump()


def _snake_fields(model: type[Model]) -> list[tuple[str, str]]:
    return [(name, field.alias) for name, field in model.model_fields.items() if field.alias and field.alias != name]


@pytest.mark.parametrize(
    ("model", "name", "alias"),
    [(m, name, alias) for m in REQUESTS for name, alias in _snake_fields(m)],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_a_request_refuses_a_python_name_as_an_unknown_field(model: type[StrictModel], name: str, alias: str):
    # Given a request body that sends a field under its Python (snake_case) name
    with pytest.raises(ValidationError) as refused:
        model.model_validate({name: None})
    # Then the key is refused as unknown, naming it (the camelCase name is the only one accepted)
    errors = refused.value.errors()
    assert {"loc": (name,), "type": "extra_forbidden"} in [{"loc": e["loc"], "type": e["type"]} for e in errors]


def test_every_camel_case_request_field_is_walked():
    walked = {alias for m in REQUESTS for _, alias in _snake_fields(m)}
    assert {"canaryPercent", "healthCheck", "timeoutSeconds", "maintenanceWindow", "expiresAt", "upgradeFrom"} <= walked
