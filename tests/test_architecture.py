"""The package's layers, bottom-up: every module imports only from its own unit or from units below it
(imports inside functions and ``if TYPE_CHECKING:`` blocks count: a cycle that only type checkers see is still a
cycle), old import paths still work with a DeprecationWarning, and the README's Layout section is the tree's."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "segzoo"

# unit -> layer; a module may import units of lower layers and its own unit, nothing else
LAYERS = {
    "_version": -1,
    "core": 0,
    "data": 1, "layers": 1,
    "encoders": 2, "decoders": 2,
    "storage": 3, "inference": 3,
    "models": 4,
    "convert": 5,
    "api": 6,
    "deploy": 7, "training": 7,
    "segzoo": 8,  # the lazy top-level package: only the command line imports it
    "cli": 9,
    "__main__": 10,
}
# nothing is exempt from the layer order since 0.4 removed the compatibility aliases of moved modules
EXEMPT: set[str] = set()


def _unit(module: str) -> str:
    """``segzoo.storage.format`` -> ``storage``; ``segzoo`` itself -> ``segzoo``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "segzoo"


def _module_name(path: Path) -> str:
    parts = ("segzoo",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str, is_package: bool):
    """Every module ``tree`` imports, at any depth (functions, ``if TYPE_CHECKING:`` blocks included)."""
    for node in ast.walk(tree):
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


# the one upward call, made at call time inside a method: SegmentationModel.from_pretrained, the pair of
# save_pretrained, is the front door's loader (which reaches the zoo, the Hub and the importers above models)
DEFERRED_UPWARD = {("segzoo.models.segmentation_model", "segzoo.api")}


def import_graph() -> dict[str, dict[str, str]]:
    """unit -> {imported unit: a file that imports it}, for every module under segzoo/."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        source = _unit(module)
        for target in _imports(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            if target.split(".")[0] != "segzoo" or (module, target) in DEFERRED_UPWARD:
                continue
            unit = _unit(target)
            if unit != source:
                graph.setdefault(source, {}).setdefault(unit, str(path.relative_to(REPO)))
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


def test_the_checker_sees_function_and_type_checking_imports():
    """The checker itself: imports inside functions and TYPE_CHECKING blocks count, or a cyclic package passes."""
    tree = ast.parse("def f():\n    from segzoo.api import create\n")
    assert list(_imports(tree, "segzoo.models.factory", False)) == ["segzoo.api"]
    tree = ast.parse("if TYPE_CHECKING:\n    from segzoo.api import create\n")
    assert list(_imports(tree, "segzoo.models.factory", False)) == ["segzoo.api"]
    assert _cycle_from({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}, "a") == ["a", "b", "c", "a"]


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert not units - set(LAYERS) - EXEMPT, f"units without a layer: {sorted(units - set(LAYERS) - EXEMPT)}"


def test_imports_go_down_the_layers_only():
    graph = import_graph()
    assert "api" in graph and "models" in graph  # the walk found the package
    wrong = [f"{src} (layer {LAYERS[src]}) imports {dst} (layer {LAYERS.get(dst, '?')}) in {where}"
             for src, targets in graph.items() if src in LAYERS and src != "segzoo"
             for dst, where in targets.items()
             if dst != "_moved" and (dst not in LAYERS or LAYERS[dst] >= LAYERS[src])]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_between_units():
    graph = {u: {d: w for d, w in t.items() if d not in EXEMPT} for u, t in import_graph().items()
             if u not in EXEMPT and u != "segzoo"}
    cycles = {unit: _cycle_from(graph, unit) for unit in graph}
    found = {unit: " -> ".join(c) for unit, c in cycles.items() if c}
    assert not found, f"import cycles: {found}"


def test_no_import_cycles_between_modules():
    """No two modules import each other, at any depth (storage/manifest and storage/specs once did): each module can
    be read, and imported, after the ones it needs. The one deferred upward call is the exception."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in _imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            while target not in modules and "." in target:  # from segzoo.core.errors import X -> the module
                target = target.rsplit(".", 1)[0]
            if target in modules and (name, target) not in DEFERRED_UPWARD and not (
                    name.startswith(target + ".") or target.startswith(name + ".") or target == name):
                targets.add(target)
        graph[name] = dict.fromkeys(targets, "")
    found = {m: " -> ".join(c) for m in graph if (c := _cycle_from(graph, m))}
    assert not found, f"module cycles: {found}"


def test_every_package_says_what_it_holds_and_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        unit = init.parent.name
        if unit in EXEMPT or unit == "recipes":
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import:" in doc, f"{init.relative_to(REPO)}: its docstring does not say what it may import"
        listed = re.sub(r"\([^)]*\)", "", doc.split("May import:", 1)[1]).replace("\n", " ").split(".")[0]
        allowed = {u.strip() for u in listed.split(",")}
        graph = set(import_graph().get(unit, {})) - {"_version", "_moved"}
        assert graph <= allowed, (unit, sorted(graph - allowed))


def test_listing_named_models_imports_neither_torch_nor_timm():
    """``segzoo list`` and ``import segzoo`` stay cheap: the lazy package, the registry and the named configs."""
    code = ("import sys, segzoo; from segzoo.core.registry import MODELS; n = MODELS.names(); "
            "assert 'unet_r18' in n; print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_listing_zoo_weights_imports_no_torch():
    """``segzoo list --weights`` reads the manifest only: the storage package loads its torch parts on use."""
    code = ("import sys, segzoo.cli as c; c.main(['list', '--weights']); "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "unet_mnv2.nuclei" in out and out.strip().splitlines()[-1] == "[]", out


# the modules segzoo 0.3 kept as deprecated aliases, removed in 0.4; docs/upgrading.md says where each went
REMOVED = ["segzoo.errors", "segzoo.config", "segzoo.io", "segzoo.registry", "segzoo.outputs", "segzoo.fast",
           "segzoo.tiling", "segzoo.losses", "segzoo.metrics", "segzoo.demo", "segzoo.pretrained", "segzoo.bench",
           "segzoo.bench.measure", "segzoo.bench.suite", "segzoo.bench.pairs", "segzoo.bench.classic_unet"]


@pytest.mark.parametrize("old", REMOVED)
def test_removed_paths_are_gone_and_the_upgrade_table_names_them(old):
    sys.modules.pop(old, None)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
    assert f"`{old}`" in (REPO / "docs" / "upgrading.md").read_text()


def test_the_package_top_level_is_the_front_door_only():
    top = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py")
    assert top == ["__init__.py", "__main__.py", "_version.py", "api.py"]


def test_importing_segzoo_warns_about_nothing():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning); import segzoo, segzoo.api, "
            "segzoo.cli.commands, segzoo.training.trainer, segzoo.deploy, segzoo.inference.predictor, segzoo.cli.demo")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_layout_is_the_trees():
    from helpers.layout import layout_block

    readme = (REPO / "docs" / "architecture.md").read_text()
    start, end = "<!-- layout: generated by tests/helpers/layout.py; do not edit -->", "<!-- end of layout -->"
    assert start in readme and end in readme, "docs/architecture.md lacks the layout markers"
    current = readme.split(start, 1)[1].split(end, 1)[0].strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = layout_block().strip()
    assert current == expected, "docs/architecture.md differs from the tree: run tests/helpers/layout.py --write"


MAX_FUNCTION_LINES = 80


def test_every_function_reads_at_once():
    """No function in segzoo/ is longer than MAX_FUNCTION_LINES lines (docstring included)."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)
