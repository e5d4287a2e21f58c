"""What template.yaml grants each function, and the environment it gives it, in each configuration.

Works on the CloudFormation that SAM's own transform makes of the template (tests.support.sam), so
Globals, policy templates, Connectors and the generated function roles are SAM's, not a re-implementation.
A configuration ("scenario") assigns a value to every parameter a Condition depends on; intrinsic
functions are then evaluated to strings, with stand-in values for what only exists once deployed
(resource names, ARNs). Both sides of the comparison are rendered with the same stand-ins.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from upgrader.infra.aws_calls import Account

ACCOUNT = Account(partition="aws", region="us-east-1", account_id="123456789012")
STACK = "stack"
PSEUDO = {
    "AWS::Partition": ACCOUNT.partition,
    "AWS::Region": ACCOUNT.region,
    "AWS::AccountId": ACCOUNT.account_id,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": f"arn:aws:cloudformation:us-east-1:123456789012:stack/{STACK}/1",
}
# Variables the Lambda runtime sets itself.
RUNTIME_ENVIRONMENT = {"AWS_REGION": ACCOUNT.region, "AWS_DEFAULT_REGION": ACCOUNT.region}
# Policies SAM attaches for the runtime (logs, VPC network interfaces, X-Ray), not for our code's calls.
PLATFORM_POLICIES = ("AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole", "AWSXrayWriteOnlyAccess")
NO_VALUE = object()


class UnsupportedTemplate(AssertionError):
    """The template uses something this check does not understand; extend the check rather than skip it."""


@dataclass(frozen=True)
class Grant:
    action: str
    resource: str  # an ARN pattern (IAM wildcards * and ?)
    where: str  # policy and statement it comes from


class Scenario:
    """One configuration of the stack: parameter values, hence conditions, hence strings."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, Any]) -> None:
        self.template = template
        self.parameters = parameters
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.parameters.items() if k in condition_parameters(self.template)}
        return ", ".join(f"{k}={v!r}" for k, v in sorted(shown.items()))

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.evaluate(self.template["Conditions"][name]))
        return self.conditions[name]

    # -- intrinsic functions ---------------------------------------------------------------------------
    def evaluate(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.evaluate(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key.startswith("Fn::") or key == "Condition":
                return self.function(key, arg)
        return {k: v for k, v in ((k, self.evaluate(v)) for k, v in value.items()) if v is not NO_VALUE}

    def function(self, key: str, arg: Any) -> Any:
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self.evaluate(when_true if self.condition(name) else when_false)
        if key == "Fn::Equals":
            left, right = (self.evaluate(a) for a in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.evaluate(arg[0])
        if key == "Fn::And":
            return all(self.evaluate(a) for a in arg)
        if key == "Fn::Or":
            return any(self.evaluate(a) for a in arg)
        if key == "Fn::GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.get_att(logical_id, attribute)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.evaluate(arg[1]))
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self.sub_variable(m.group(1), variables)), text)
        if key == "Fn::Join":
            separator, items = arg
            return separator.join(str(i) for i in self.evaluate(items))
        if key == "Fn::Split":
            separator, text = arg
            return str(self.evaluate(text)).split(separator)
        if key == "Fn::Select":
            index, items = arg
            return self.evaluate(items)[int(self.evaluate(index))]
        raise UnsupportedTemplate(f"intrinsic function {key} is not understood by the IAM check")

    def sub_variable(self, name: str, variables: dict[str, Any]) -> Any:
        if name in variables:
            return variables[name]
        if "." in name and not name.startswith("AWS::"):
            return self.get_att(*name.split(".", 1))
        return self.ref(name)

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self.template["Resources"].get(name)
        if resource is None:
            raise UnsupportedTemplate(f"Ref to unknown {name}")
        kind = resource["Type"]
        if kind == "AWS::S3::Bucket":
            return f"{STACK}-{name.lower()}-1a2b3c"
        if kind in ("AWS::SecretsManager::Secret", "AWS::SecretsManager::SecretTargetAttachment"):
            return f"arn:aws:secretsmanager:{ACCOUNT.region}:{ACCOUNT.account_id}:secret:{name}-AbCdEf"
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{ACCOUNT.account_id}:policy/{STACK}-{name}"
        return f"{STACK}-{name}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.template["Resources"][logical_id]["Type"]
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{self.ref(logical_id)}"
        if kind == "AWS::RDS::DBProxy" and attribute == "DBProxyArn":
            return f"arn:aws:rds:{ACCOUNT.region}:{ACCOUNT.account_id}:db-proxy:prx-{logical_id.lower()}"
        if kind == "AWS::RDS::DBProxy" and attribute == "Endpoint":
            return f"{STACK}-db.proxy-example.{ACCOUNT.region}.rds.amazonaws.com"
        return f"{STACK}-{logical_id}.{attribute}"

    # -- what a function gets --------------------------------------------------------------------------
    def environment(self, function_id: str) -> dict[str, str]:
        variables = self.template["Resources"][function_id]["Properties"].get("Environment", {}).get("Variables", {})
        rendered = self.evaluate(variables)
        return {**RUNTIME_ENVIRONMENT, **{k: str(v) for k, v in rendered.items()}}

    def grants(self, function_id: str) -> tuple[list[Grant], list[str]]:
        """(grants, platform policies) of the function's role in this scenario."""
        resources = self.template["Resources"]
        role_ref = resources[function_id]["Properties"]["Role"]
        if not (isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref):
            raise UnsupportedTemplate(f"{function_id}: role {role_ref!r} is not a role of this template")
        role_id = role_ref["Fn::GetAtt"][0]
        role = resources[role_id]["Properties"]
        grants: list[Grant] = []
        platform: list[str] = []
        for policy in role.get("Policies", []):
            grants += self.statements(policy["PolicyDocument"], f"{role_id}/{policy['PolicyName']}")
        for arn in role.get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and set(arn) == {"Ref"} and arn["Ref"] in resources:
                grants += self.statements(resources[arn["Ref"]]["Properties"]["PolicyDocument"], arn["Ref"])
                continue
            evaluated = self.evaluate(arn)
            if evaluated is NO_VALUE:
                continue
            text = str(evaluated)
            if text.rsplit("/", 1)[-1] in PLATFORM_POLICIES:
                platform.append(text.rsplit("/", 1)[-1])
                continue
            raise UnsupportedTemplate(f"{function_id}: managed policy {text}: its actions are unknown to the check")
        for name, resource in resources.items():  # policies attached from outside the role (Connectors)
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                roles = resource["Properties"].get("Roles", [])
                if {"Ref": role_id} in roles:
                    grants += self.statements(resource["Properties"]["PolicyDocument"], name)
        return grants, platform

    def statements(self, document: dict[str, Any], where: str) -> list[Grant]:
        grants: list[Grant] = []
        for index, statement in enumerate(self.evaluate(document["Statement"])):
            label = f"{where}:{statement.get('Sid', index)}"
            if statement.get("Effect") != "Allow" or {"NotAction", "NotResource"} & set(statement):
                raise UnsupportedTemplate(f"{label}: only Allow statements with Action and Resource are understood")
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            patterns = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            grants += [Grant(str(a), str(r), label) for a in actions for r in patterns]
        return grants


GRANTING_TYPES = ("AWS::Lambda::Function", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def condition_parameters(template: dict[str, Any]) -> list[str]:
    """Parameters the Conditions of functions and their IAM roles and policies depend on: they decide which
    grants exist and what each function's environment says. (Conditions of other resources, such as
    the notification rules and subscriptions, decide no grant of a function.)"""
    conditions = template.get("Conditions", {})
    used: set[str] = set()

    def conditions_in(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "Fn::If" and isinstance(item, list) and item and isinstance(item[0], str):
                    add(item[0])
                if key == "Condition" and isinstance(item, str):
                    add(item)
                conditions_in(item)
        elif isinstance(value, list):
            for item in value:
                conditions_in(item)

    def add(name: str) -> None:
        if name in conditions and name not in used:
            used.add(name)
            conditions_in(conditions[name])

    resources = template.get("Resources", {})
    roles = {
        r["Properties"]["Role"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r.get("Type") == "AWS::Lambda::Function" and isinstance(r["Properties"].get("Role"), dict)
        and "Fn::GetAtt" in r["Properties"]["Role"]
    }  # fmt: skip
    for name, resource in resources.items():
        if resource.get("Type") in GRANTING_TYPES or name in roles:  # functions' own roles, not EventBridge's
            conditions_in(resource)
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"Ref"} and value["Ref"] in template.get("Parameters", {}):
                found.add(value["Ref"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk([conditions[name] for name in sorted(used)])
    return sorted(found)


def example_value(name: str, spec: dict[str, Any]) -> Any:
    """A plausible deployed value: the default when it has one, else a stand-in (Rules ask for one)."""
    if spec["Type"].startswith("List<") or spec["Type"] == "CommaDelimitedList":
        return [f"example-{name.lower()}"]
    default = spec.get("Default")
    if default not in (None, ""):
        return default
    return f"example-{name.lower()}"


def scenarios(template: dict[str, Any]) -> Iterator[Scenario]:
    """Every combination of values of the condition parameters (allowed values, or default vs. set)."""
    parameters = template.get("Parameters", {})
    base = {name: example_value(name, spec) for name, spec in parameters.items()}
    choices = []
    for name in condition_parameters(template):
        spec = parameters[name]
        values = spec.get("AllowedValues") or [spec.get("Default", ""), f"example-{name.lower()}"]
        choices.append([(name, v) for v in dict.fromkeys(values)])
    for combination in itertools.product(*choices):
        yield Scenario(template, {**base, **dict(combination)})


def arn_matches(arn: str, pattern: str) -> bool:
    """IAM resource matching: * any run of characters, ? one character, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn) is not None
