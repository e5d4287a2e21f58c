"""The API's words that come from a registry: `Component` (upgrader.infra.components) and `Strategy`
(upgrader.contract.strategies).

Each validates against its registry when a request is validated and writes the registry's names as the
JSON Schema enum when a document is written, so a name registered later (a test's fifth component or
strategy) is known to the models without rebuilding them. A name outside the registry is refused as a
`Literal` of the same names would refuse it (same error type and message), so the API answers as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from upgrader.contract.strategies import strategy_names
from upgrader.infra.components import component_names


class OneOf:
    """A string among the names `names()` gives at the time of asking."""

    def __init__(self, names: Callable[[], tuple[str, ...]]) -> None:
        self._names = names

    def _check(self, value: Any) -> str:
        names = self._names()
        if isinstance(value, str) and value in names:
            return value
        expected = f"{', '.join(map(repr, names[:-1]))} or {names[-1]!r}" if len(names) > 1 else repr(names[0])
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self._check)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"enum": list(self._names()), "type": "string"}


Component = Annotated[str, OneOf(component_names)]
Strategy = Annotated[str, OneOf(strategy_names)]
# Field descriptions, written when the module loads: "api | dashboard | exporter | mosquitto".
COMPONENTS_IN_WORDS = " | ".join(component_names())
STRATEGIES_IN_WORDS = " | ".join(strategy_names())
