"""`Component`: a registered component's name as the API's models take it (upgrader.infra.components)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from upgrader.infra.components import component_names


def _registered_component(value: Any) -> str:
    """A component of the registry (upgrader.infra.components), read when a request is validated; refused as
    a Literal of the same names would be (same error type and message)."""
    names = component_names()
    if isinstance(value, str) and value in names:
        return value
    expected = f"{', '.join(map(repr, names[:-1]))} or {names[-1]!r}" if len(names) > 1 else repr(names[0])
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


class _ComponentName:
    """`Component`'s validation and JSON Schema (an enum of the registry's names, asked each time a schema
    is written), so a component registered later is known to the models without rebuilding them."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(_registered_component)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"enum": list(component_names()), "type": "string"}


Component = Annotated[str, _ComponentName]
COMPONENTS_IN_WORDS = " | ".join(component_names())  # a field's description, written when the module loads
