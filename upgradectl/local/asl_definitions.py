"""The state machine's definition as the template deploys it: `${Key}` placeholders replaced like CloudFormation's
DefinitionSubstitutions (one `<Name>FunctionArn` per Lambda function), and a function's name read back from an
ARN. Not deployed."""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


class UnresolvedSubstitutionError(ValueError):
    """A ``${Key}`` placeholder in an ASL definition has no substitution."""


def substitution_key(function_name: str) -> str:
    """``prepare_run`` -> ``PrepareRunFunctionArn`` (the template's DefinitionSubstitutions key)."""
    return "".join(part.capitalize() for part in function_name.split("_") if part) + "FunctionArn"


def render_definition(definition: str, substitutions: Mapping[str, str]) -> str:
    """Replace ``${Key}`` like CloudFormation DefinitionSubstitutions; fail on anything left over."""
    missing = sorted({key for key in _PLACEHOLDER.findall(definition) if key not in substitutions})
    if missing:
        raise UnresolvedSubstitutionError(
            f"ASL placeholders without a substitution: {', '.join('${' + k + '}' for k in missing)}"
        )
    rendered = _PLACEHOLDER.sub(lambda match: str(substitutions[match.group(1)]), definition)
    if "${" in rendered:
        raise UnresolvedSubstitutionError("ASL still contains '${' after substitution")
    return rendered


def function_name_from(name_or_arn: str) -> str:
    """Function name from a name, ``name:qualifier``, or a (possibly qualified) function ARN."""
    if name_or_arn.startswith("arn:"):
        # arn:aws:lambda:region:account:function:name[:qualifier]
        parts = name_or_arn.split(":")
        return parts[6] if len(parts) > 6 else name_or_arn
    return name_or_arn.split(":", 1)[0]
