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
# compatibility shims of moved modules (segzoo._moved.MOVED), the lazy top-level package and the version: they
# import what they alias, wherever it lives
EXEMPT = {"_moved", "pretrained", "bench", "errors", "io", "config", "registry", "outputs", "fast", "tiling",
          "losses", "metrics", "demo"}


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


@pytest.mark.parametrize("old,new,name", [
    ("segzoo.errors", "segzoo.core.errors", "InvalidValueError"),
    ("segzoo.config", "segzoo.core.config", "ModelConfig"),
    ("segzoo.io", "segzoo.core.io", "atomic_path"),
    ("segzoo.registry", "segzoo.core.registry", "MODELS"),
    ("segzoo.outputs", "segzoo.core.outputs", "class_ids"),
    ("segzoo.fast", "segzoo.inference.fast", "optimize"),
    ("segzoo.tiling", "segzoo.inference.tiling", "predict_probs"),
    ("segzoo.losses", "segzoo.training.losses", "build_loss"),
    ("segzoo.metrics", "segzoo.training.metrics", "ConfusionMatrix"),
    ("segzoo.bench.measure", "segzoo.core.timing", "latencies"),
])
def test_old_import_paths_work_with_a_deprecation_warning(old, new, name):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)  # the same object


def test_old_inference_names_still_import_from_the_package():
    from segzoo.cli.files import load_for_inference as direct
    from segzoo.inference import load_for_inference, predict_files  # the old module, now a package

    assert load_for_inference is direct and callable(predict_files)


def test_importing_segzoo_warns_about_nothing():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning); import segzoo, segzoo.api, "
            "segzoo.cli.commands, segzoo.training.trainer, segzoo.deploy, segzoo.cli.files, segzoo.cli.demo")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_segzoo_never_imports_through_an_old_path():
    """The package's own modules use the new homes: an old path (``segzoo._moved``) would warn at the user."""
    from segzoo._moved import MOVED, MOVED_NAMES

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if _unit(module) in EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets, names = [a.name for a in node.names], []
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets, names = [node.module or ""], [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target in MOVED or any(f"{target}.{n}" in MOVED or (target, n) in MOVED_NAMES for n in names):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} imports {target} {names or ''}")
    assert not found, "\n".join(found)


def test_readme_layout_is_the_trees():
    from helpers.layout import layout_block

    readme = (REPO / "README.md").read_text()
    start, end = "<!-- layout: generated by tests/helpers/layout.py; do not edit -->", "<!-- end of layout -->"
    assert start in readme and end in readme, "the README lacks the layout markers"
    current = readme.split(start, 1)[1].split(end, 1)[0].strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = layout_block().strip()
    assert current == expected, "README's Layout differs from the tree: run python tests/helpers/layout.py --write"
