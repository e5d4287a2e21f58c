"""The wire's naming, for every model that crosses it: snake_case fields in Python, camelCase on the wire.

One base for answers (`Model`) and one for what callers send (`StrictModel`). Below the contract and the
analysis checks alike, so that both use the same classes (the contract imports the analysis package, so
the base cannot live in the contract)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """The base of the API's models: each builds its validator and serializer when it is first used, not
    when its module is imported (a function's cold start builds only the models that function uses).

    Fields are snake_case in Python and camelCase on the wire (`alias_generator`): a response is built by
    the Python names (or from a record's attributes) and always serializes the camelCase names."""

    model_config = ConfigDict(
        defer_build=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


class StrictModel(Model):
    # The base of every request (and its parts): unknown fields are refused (a misspelt "canarypercent"
    # must not be silently ignored) and numbers must be JSON numbers ("ten" and "10" are refused alike).
    # Only the wire's camelCase names are accepted: a snake_case key ("canary_percent") is an unknown field.
    model_config = ConfigDict(extra="forbid", strict=True, validate_by_name=False)
