"""The package's layers: no subpackage imports one that imports it back (imports inside functions count;
``if TYPE_CHECKING:`` blocks do not, they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segzoo"


def _unit(module: str) -> str:
    """``segzoo.storage.format`` -> ``storage``; ``segzoo`` itself -> ``segzoo``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "segzoo"


def _module_name(path: Path) -> str:
    parts = ("segzoo",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" or (
        isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (t for child in node.orelse for t in _imports(ast.Module([child], []), module, is_package))
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "segzoo":  # from segzoo import convert: the submodules named
                yield from ("segzoo." + a.name for a in node.names)
            else:
                yield target
        yield from _imports(node, module, is_package)


def import_graph() -> dict[str, dict[str, str]]:
    """unit -> {imported unit: a file that imports it}, for every module under segzoo/."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        source = _unit(module)
        for target in _imports(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            if target.split(".")[0] != "segzoo":
                continue
            unit = _unit(target)
            if unit != source:
                graph.setdefault(source, {}).setdefault(unit, str(path.relative_to(PACKAGE.parent)))
    return graph


def _cycle_from(graph: dict[str, dict[str, str]], start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, {}):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_graph_sees_function_level_imports():
    """The checker itself: it must find imports inside functions, or it could pass on a cyclic package."""
    tree = ast.parse("def f():\n    from segzoo.api import create\n")
    assert list(_imports(tree, "segzoo.models.factory", False)) == ["segzoo.api"]
    tree = ast.parse("if TYPE_CHECKING:\n    from segzoo.api import create\n")
    assert list(_imports(tree, "segzoo.models.factory", False)) == []
    assert _cycle_from({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}, "a") == ["a", "b", "c", "a"]


def test_no_import_cycles_between_subpackages():
    graph = import_graph()
    assert "api" in graph and "models" in graph  # the walk found the package
    cycles = {unit: _cycle_from(graph, unit) for unit in graph}
    found = {unit: " -> ".join(c) for unit, c in cycles.items() if c}
    evidence = {unit: [graph[a][b] for a, b in zip(c, c[1:])] for unit, c in cycles.items() if c}
    assert not found, f"import cycles: {found}; imported in {evidence}"


@pytest.mark.parametrize("low", ["registry", "config", "encoders", "decoders", "storage", "models", "convert"])
def test_lower_layers_never_import_the_front_door(low):
    """``segzoo.api`` (create, from_pretrained) sits above models, storage and converters."""
    graph = import_graph()
    assert "api" not in graph.get(low, {}), f"{low} imports segzoo.api in {graph[low]['api']}"
    assert "segzoo" not in graph.get(low, {}), f"{low} imports the top-level package in {graph[low]['segzoo']}"
