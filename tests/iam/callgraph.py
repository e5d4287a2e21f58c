"""What each Lambda's code can reach, and where it calls AWS, found statically (ast only, nothing imported).

- Modules: layers/shared/upgrader/** (as `upgrader.*`) and functions/<name>/*.py (as `functions.<name>.*`).
- Reachability, per function: from the module body and every def of functions/<name>/app.py, follow
  names resolved through imports (re-exports included), `self.method`, class instantiation, and, for a
  method called on a value of unknown type, every method of that name of a class the function's code
  instantiates (rapid type analysis). Imports inside a function count when the function is reached.
- AWS call sites: calls of a boto3 client method, i.e. a method named like an operation of a service
  the code creates clients for (any call whose first argument is a botocore service name, as in
  `boto3.client("s3")`, `session.client("sts")`, `aws_client("stepfunctions", ...)`), botocore's own
  client methods (`generate_db_auth_token`), `get_paginator("op")` / `generate_presigned_url("op")`, and
  calls of the SigV4 signers of HTTP APIs boto3 has no client for (`SIGNED_HTTP`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = ROOT / "layers" / "shared"
FUNCTIONS = ROOT / "functions"

# Client methods botocore adds to the operations: method -> IAM action (None: the operation named by
# the first argument, e.g. get_paginator("list_executions") calls ListExecutions).
CLIENT_CUSTOMIZATIONS: dict[str, str | None] = {
    "generate_db_auth_token": "rds-db:connect",
    "generate_db_connect_auth_token": "rds-db:connect",
    "generate_presigned_url": None,
    "get_paginator": None,
    "get_waiter": None,
}
# Functions that sign HTTP requests with SigV4 for an AWS API boto3 has no client for: a call of one is an AWS
# call (its method: the function's name), needing this IAM action. Amazon Managed Prometheus' query API.
SIGNED_HTTP: dict[str, str] = {"upgrader.analysis.providers.prometheus.sigv4_signer": "aps:QueryMetrics"}
SIGNED_HTTP_ACTIONS = {qualified.rsplit(".", 1)[1]: action for qualified, action in SIGNED_HTTP.items()}
MODULE_BODY = "<module>"
# Operations whose IAM action is not named like the operation (the Service Authorization Reference).
IAM_ACTION_NAMES = {"lambda:Invoke": "lambda:InvokeFunction", "lambda:InvokeAsync": "lambda:InvokeAsync"}
# Services whose IAM prefix is not their signing name (CloudWatch signs as "monitoring", IAM says "cloudwatch").
IAM_PREFIXES = {"monitoring": "cloudwatch"}


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    defs: dict[str, ast.AST] = field(default_factory=dict)  # qualified name -> FunctionDef | ClassDef


@dataclass(frozen=True)
class CallSite:
    site: str  # qualified name of the def the call is in (nested defs and lambdas count as their outer def)
    method: str  # client method, or the operation for get_paginator/generate_presigned_url
    path: str  # relative to the repository
    line: int

    def __str__(self) -> str:
        return f"{self.site} -> {self.method} ({self.path}:{self.line})"


class Codebase:
    """The deployed Python code, parsed once."""

    def __init__(self, package_root: Path = PACKAGE_ROOT, functions_root: Path = FUNCTIONS) -> None:
        self.root = package_root.parents[1]
        self.modules: dict[str, Module] = {}
        for path in sorted(package_root.rglob("*.py")):
            parts = path.relative_to(package_root).with_suffix("").parts
            self._add(".".join(parts[:-1] if parts[-1] == "__init__" else parts), path)
        for path in sorted(functions_root.glob("*/*.py")):
            self._add(f"functions.{path.parent.name}.{path.stem}", path)
        self.defs: dict[str, tuple[Module, ast.AST]] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        for module in self.modules.values():
            self._index(module)
        for module in self.modules.values():
            module.imports = self._imports(module)

    # -- indexing ---------------------------------------------------------------------------------------
    def _add(self, name: str, path: Path) -> None:
        self.modules[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))

    def _index(self, module: Module) -> None:
        for node in module.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.defs[f"{module.name}.{node.name}"] = (module, node)
            elif isinstance(node, ast.ClassDef):
                qualname = f"{module.name}.{node.name}"
                self.classes[qualname] = node
                self.defs[qualname] = (module, node)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self.defs[f"{qualname}.{item.name}"] = (module, item)
        self.defs[f"{module.name}.{MODULE_BODY}"] = (module, module.tree)

    def _imports(self, module: Module) -> dict[str, str]:
        aliases: dict[str, str] = {}
        siblings = module.name.rsplit(".", 1)[0] if module.name.startswith("functions.") else None
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = self._local(alias.name, siblings)
                    aliases[alias.asname or alias.name.split(".")[0]] = (
                        target if alias.asname else alias.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = self._local(node.module, siblings)
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        return aliases

    def _local(self, name: str, siblings: str | None) -> str:
        """A sibling module of a function folder imports as a top-level name, as in Lambda."""
        if siblings and f"{siblings}.{name}" in self.modules:
            return f"{siblings}.{name}"
        return name

    # -- resolution -------------------------------------------------------------------------------------
    def resolve(self, qualified: str, depth: int = 0) -> str | None:
        """A def, class or module for a qualified name, following re-exports (`from x import y` in a module)."""
        if qualified in self.defs or qualified in self.modules or depth > 10:
            return qualified if depth <= 10 else None
        module_name, _, attr = qualified.rpartition(".")
        module = self.modules.get(module_name)
        if module is not None and attr in module.imports:
            return self.resolve(module.imports[attr], depth + 1)
        return None

    def fields(self, class_name: str) -> set[str]:
        """The names a class declares as data (annotated in its body: a dataclass's or a model's fields),
        inherited ones included: `self.<field>` reads a value, it calls nothing."""
        node = self.classes[class_name]
        module, _ = self.defs[class_name]
        found: set[str] = set()
        for base in node.bases:
            base_name = self._name_of(base, module, set())
            if base_name in self.classes:
                found |= self.fields(base_name)
        found |= {item.target.id for item in node.body
                  if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}  # fmt: skip
        return found

    def methods(self, class_name: str) -> dict[str, str]:
        """method name -> qualified def, own methods over inherited ones (project classes only)."""
        node = self.classes[class_name]
        module, _ = self.defs[class_name]
        found: dict[str, str] = {}
        for base in node.bases:
            base_name = self._name_of(base, module, set())
            if base_name in self.classes:
                found.update(self.methods(base_name))
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                found[item.name] = f"{class_name}.{item.name}"
        return found

    def _name_of(self, node: ast.AST, module: Module, local_names: set[str]) -> str | None:
        if isinstance(node, ast.Name):
            if node.id in local_names:
                return None
            if f"{module.name}.{node.id}" in self.defs:
                return f"{module.name}.{node.id}"
            if node.id in module.imports:
                return self.resolve(module.imports[node.id])
            return None
        if isinstance(node, ast.Attribute):
            base = self._name_of(node.value, module, local_names)
            if base is not None and base in self.modules:
                return self.resolve(f"{base}.{node.attr}")
        return None

    # -- reachability -----------------------------------------------------------------------------------
    def reachable_from(self, module_name: str) -> set[str]:
        """Every def (qualified name) the code of `module_name` can reach, its own defs included."""
        roots = [q for q, (m, _) in self.defs.items() if m.name == module_name and "." not in q[len(module_name) + 1 :]]
        reached: set[str] = set()
        instantiated: set[str] = set()
        attribute_names: set[str] = set()
        pending = list(roots)
        while pending:
            qualname = pending.pop()
            if qualname in reached:
                continue
            reached.add(qualname)
            module, node = self.defs[qualname]
            pending.append(f"{module.name}.{MODULE_BODY}")  # a module's body runs when it is imported
            for kind, value in self._references(qualname, module, node):
                if kind == "def":
                    pending.append(value)
                elif kind == "class" and value not in instantiated:
                    instantiated.add(value)
                    pending.append(value)
                    own = self.methods(value)
                    pending.extend(q for name, q in own.items() if name in attribute_names or name.startswith("__"))
                elif kind == "module":
                    pending.append(f"{value}.{MODULE_BODY}")
                elif kind == "attribute" and value not in attribute_names:
                    attribute_names.add(value)
                    for class_name in instantiated:
                        method = self.methods(class_name).get(value)
                        if method:
                            pending.append(method)
        return reached

    def _references(self, qualname: str, module: Module, node: ast.AST) -> Iterator[tuple[str, str]]:
        class_name = qualname.rsplit(".", 1)[0] if qualname.rsplit(".", 1)[0] in self.classes else None
        local_names = _local_names(node)
        for child in _walk_code(node, top=True):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for alias in child.names:
                    target = module.imports.get(alias.asname or alias.name.split(".")[0])
                    resolved = self.resolve(target) if target else None
                    if resolved in self.modules:
                        yield "module", resolved
                    elif resolved:
                        yield "module", self.defs[resolved][0].name
                continue
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load):
                yield from self._target(self._name_of(child, module, local_names))
            elif isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Load):
                base = child.value
                if class_name and isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    method = self.methods(class_name).get(child.attr)
                    if method:
                        yield "def", method
                        continue
                    if child.attr in self.fields(class_name):
                        continue  # its own field: a value, not a method of another class
                resolved = self._name_of(child, module, local_names)
                if resolved is not None:
                    yield from self._target(resolved)
                elif self._name_of(base, module, local_names) not in self.modules:
                    yield "attribute", child.attr

    def _target(self, resolved: str | None) -> Iterator[tuple[str, str]]:
        if resolved is None:
            return
        if resolved in self.classes:
            yield "class", resolved
        elif resolved in self.defs:
            yield "def", resolved
        elif resolved in self.modules:
            yield "module", resolved

    # -- AWS call sites ---------------------------------------------------------------------------------
    def aws_call_sites(self) -> list[CallSite]:
        methods = aws_client_methods(frozenset(self.client_services()))
        sites: list[CallSite] = []
        for qualname, (module, node) in self.defs.items():
            if isinstance(node, ast.ClassDef):
                continue
            local_names = _local_names(node)
            for child in _walk_code(node, top=True):
                if isinstance(child, ast.Call) and self._name_of(child.func, module, local_names) in SIGNED_HTTP:
                    signer = str(self._name_of(child.func, module, local_names)).rsplit(".", 1)[1]
                    sites.append(CallSite(qualname, signer, self._shown(module), child.lineno))
                    continue
                if not (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)):
                    continue
                name = child.func.attr
                if CLIENT_CUSTOMIZATIONS.get(name, "") is None:  # the operation is the first argument
                    if child.args and isinstance(child.args[0], ast.Constant) and isinstance(child.args[0].value, str):
                        sites.append(CallSite(qualname, child.args[0].value, self._shown(module), child.lineno))
                    else:
                        sites.append(CallSite(qualname, f"{name}(<not a literal>)", self._shown(module), child.lineno))
                elif name in methods or name in CLIENT_CUSTOMIZATIONS:
                    sites.append(CallSite(qualname, name, self._shown(module), child.lineno))
        return sites

    def _shown(self, module: Module) -> str:
        return str(module.path.relative_to(self.root))

    def client_services(self) -> set[str]:
        """botocore services named as the first argument (or service_name=) of any call."""
        known = set(botocore_session().get_available_services())
        found: set[str] = set()
        for module in self.modules.values():
            for node in ast.walk(module.tree):
                if not isinstance(node, ast.Call):
                    continue
                values = [node.args[0]] if node.args else []
                values += [k.value for k in node.keywords if k.arg == "service_name"]
                found |= {
                    v.value
                    for v in values
                    if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value in known
                }
        return found


@cache
def botocore_session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def aws_client_methods(services: frozenset[str]) -> dict[str, set[str]]:
    """client method -> IAM actions it may mean, for the given services."""
    methods: dict[str, set[str]] = {}
    for service in services:
        model = botocore_session().get_service_model(service)
        for operation in model.operation_names:
            action = f"{IAM_PREFIXES.get(model.signing_name, model.signing_name)}:{operation}"
            methods.setdefault(xform_name(operation), set()).add(IAM_ACTION_NAMES.get(action, action))
    return methods


def _local_names(node: ast.AST) -> set[str]:
    """Parameters and assigned names of a def: they shadow module-level names of the same spelling."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return set()
    names = {a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]}
    names |= {a.arg for a in (node.args.vararg, node.args.kwarg) if a is not None}
    for child in _walk_code(node, top=True):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            names.add(child.id)
    return names


def _walk_code(node: ast.AST, *, top: bool = False) -> Iterator[ast.AST]:
    """The code a def runs: its body with nested defs and lambdas, not annotations. A module's body
    skips its functions and methods (they run only when reached) but keeps class-level statements."""
    if isinstance(node, ast.Module):
        for statement in node.body:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from _decorators(statement)
            elif isinstance(statement, ast.ClassDef):
                yield from _decorators(statement)
                for base in statement.bases:
                    yield from _walk_code(base)
                for item in statement.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        yield from _decorators(item)
                    else:
                        yield from _walk_code(item)
            else:
                yield from _walk_code(statement)
        return
    if isinstance(node, ast.ClassDef) and top:
        return
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and top:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                yield from _walk_code(default)
        for statement in node.body:
            yield from _walk_code(statement)
        return
    yield node
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns"):
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, ast.AST):
                yield from _walk_code(child)


def _decorators(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> Iterator[ast.AST]:
    for decorator in node.decorator_list:
        yield from _walk_code(decorator)
