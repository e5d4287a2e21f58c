"""The structure's rules (issue 24): no module over 400 lines outside tests, no import cycle in the Shared
layer's `upgrader` package, and the cluster adapter (`upgrader.cluster`) never imports the domain.

Read from the source (ast), nothing imported. Imports inside functions count (a lazy import is still a
dependency); imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "layers" / "shared"
PACKAGE = SHARED / "upgrader"
SOURCES = [ROOT / "layers", ROOT / "functions", ROOT / "upgradectl"]
MAX_LINES = 400
# Modules still over the limit, each with the size it may not grow past: the list only shrinks.
TOO_BIG_FOR_NOW: dict[str, int] = {}
# What the cluster adapter may import of the product besides itself: facts that import nothing of it.
CLUSTER_MAY_IMPORT = {
    "upgrader.infra.names",
    "upgrader.infra.redaction",
    "upgrader.infra.components",
    "upgrader.infra.registry",
}


def sizes() -> dict[str, int]:
    found = {}
    for source in SOURCES:
        for path in source.rglob("*.py"):
            found[path.relative_to(ROOT).as_posix()] = len(path.read_text().splitlines())
    return found


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(test)


def _imports(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            found.append(child)
        elif not _type_checking_only(child):
            found.extend(_imports(child))
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the product's modules it imports (`from upgrader import x` names module upgrader.x)."""
    paths = {module_name(path, package): path for path in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name in paths}
            elif node.module:
                for alias in node.names:
                    whole = f"{node.module}.{alias.name}"
                    targets.add(whole if whole in paths else node.module)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_is_over_the_size_limit_outside_tests():
    found = sizes()
    too_big = {path: n for path, n in found.items() if n > TOO_BIG_FOR_NOW.get(path, MAX_LINES)}
    assert too_big == {}, f"over {MAX_LINES} lines (split it along the domain): {too_big}"


def test_the_list_of_modules_still_too_big_only_shrinks():
    """A module split below the limit leaves the list, and the sizes written there are the real ones."""
    found = sizes()
    assert {path: found.get(path) for path in TOO_BIG_FOR_NOW} == {
        path: n for path, n in TOO_BIG_FOR_NOW.items() if found.get(path, 0) > MAX_LINES
    }


def test_the_upgrader_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def collapsed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between the package's parts: each sub-package one node (upgrader.cluster.jobs -> upgrader.cluster)."""

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    return parts


def test_no_cycle_between_the_sub_packages():
    """No part of the package imports back a part that imports it (as `upgrader.fleet.discovery` and the cluster
    adapter's `cluster.discovery` did through each other's types)."""
    assert cycles(collapsed(import_graph())) == []


# The parts of the package and what each may import: every arrow runs down, from the composition root
# (`factory`) through the API's use cases, the fleet and the rollout to the contract, the events, the
# cluster adapter and the infrastructure, which imports none of them.
LAYERS = {
    "upgrader.factory": {
        "api",
        "fleet",
        "promotion",
        "rollout",
        "notifications",
        "cluster",
        "images",
        "contract",
        "analysis",
        "infra",
    },
    "upgrader.api": {
        "fleet",
        "promotion",
        "rollout",
        "notifications",
        "cluster",
        "images",
        "contract",
        "analysis",
        "infra",
    },
    "upgrader.fleet": {"promotion", "rollout", "notifications", "cluster", "images", "contract", "analysis", "infra"},
    # rings, promotion rules, their evidence, trains (its compatibility check asks the rollout's rules)
    "upgrader.promotion": {"rollout", "notifications", "cluster", "images", "contract", "analysis", "infra"},
    "upgrader.rollout": {"notifications", "cluster", "images", "contract", "analysis", "infra"},
    "upgrader.notifications": {"contract", "analysis", "infra"},
    "upgrader.cluster": {"infra"},
    "upgrader.images": {"infra"},  # the image registries' port, adapters and the pre-flight rule (issue 22)
    "upgrader.contract": {"analysis", "infra"},  # a deploy request's `analysis` checks are analysis.checks models
    "upgrader.analysis": {"infra"},  # checks, templating, judgement, providers: below the contract that holds them
    "upgrader.infra": set(),
    "upgrader": set(),
}


def test_the_parts_import_only_downwards():
    parts = collapsed(import_graph())
    assert set(parts) == set(LAYERS), "a new part of the package: give it its place in LAYERS"
    upward = {
        part: sorted(t.removeprefix("upgrader.") for t in targets if t.removeprefix("upgrader.") not in LAYERS[part])
        for part, targets in parts.items()
    }
    assert {part: targets for part, targets in upward.items() if targets} == {}


def test_the_cluster_adapter_imports_nothing_of_the_domain():
    graph = import_graph()
    outside = {
        module: sorted(t for t in targets if not t.startswith("upgrader.cluster") and t not in CLUSTER_MAY_IMPORT)
        for module, targets in graph.items()
        if module.startswith("upgrader.cluster")
    }
    assert {module: targets for module, targets in outside.items() if targets} == {}


def test_the_rules_see_a_cycle_and_a_lazy_import(tmp_path):
    package = tmp_path / "upgrader"
    (package / "cluster").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cluster" / "__init__.py").write_text("")
    (package / "a.py").write_text("from upgrader.b import x\n")
    (package / "b.py").write_text("def f():\n    from upgrader import a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from upgrader import a\n")
    (package / "cluster" / "reader.py").write_text("import upgrader.c\n")
    graph = import_graph(package)
    assert cycles(graph) == [["upgrader.a", "upgrader.b"]]
    assert graph["upgrader.c"] == set()
    assert graph["upgrader.cluster.reader"] == {"upgrader.c"}
    (package / "c.py").write_text("from upgrader.cluster.reader import y\n")
    assert sorted(cycles(collapsed(import_graph(package)))) == [
        ["upgrader.a", "upgrader.b"],
        ["upgrader.c", "upgrader.cluster"],
    ]


def test_each_listed_module_exists():
    assert [module for module in sorted(TOO_BIG_FOR_NOW) if not (ROOT / module).is_file()] == []


def test_every_package_is_installed():
    """pyproject.toml lists the packages one by one: a new sub-package left out would be missing from an
    installed copy (the CLI, the local stack) while the tests, which import from the tree, still pass."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(init.parent / "__init__.py") for init in PACKAGE.rglob("__init__.py")}
    found |= {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "upgradectl").rglob("__init__.py")}
    assert found - listed == set()


def _places(pattern: str) -> list[str]:
    return sorted(
        path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py") if re.search(pattern, path.read_text())
    )


def test_one_timestamp_formatter_and_one_strict_base_model():
    """Each of these facts is written once: how a timestamp is formatted, and what a strict request model is."""
    assert _places(r"%Y-%m-%dT") == ["infra/timestamps.py"]
    # one base below both the contract and the analysis checks (which the contract imports)
    assert _places(r"extra=\"forbid\", strict=True") == ["infra/wire.py"]
