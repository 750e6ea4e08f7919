"""hubconf.py: exactly the named models, lazily imported, loadable through torch.hub."""

from __future__ import annotations

import ast
import inspect

import pytest
import torch
from conftest import REPO

import segzoo


def _hub_entrypoints() -> list[str]:
    """What torch.hub.list reports for a local repo (the rule torch.hub applies to hubconf)."""
    if "source" in inspect.signature(torch.hub.list).parameters:
        return sorted(torch.hub.list(str(REPO), source="local"))
    module = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))  # the loader torch.hub.list uses
    return sorted(n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_"))


def test_lists_exactly_the_core_named_models():
    core = [n for n in segzoo.list_models() if segzoo.model_info(n)["source"] == "segzoo"]
    assert _hub_entrypoints() == core


def test_only_segzoo_is_imported_and_only_inside_functions():
    tree = ast.parse((REPO / "hubconf.py").read_text())
    top_level_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top_level_imports == []
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"segzoo"}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            assert ast.get_docstring(node), f"{node.name} has no docstring"


@pytest.mark.parametrize(
    "name,kwargs,shape",
    [
        ("unet_carvana", {}, (1, 2, 35, 41)),
        ("deeplabv3plus_r50", {"encoder": "test_resnet", "num_classes": 4}, (1, 4, 35, 41)),
        ("swin_unet_t", {"num_classes": 3}, (1, 3, 35, 41)),
    ],
)
def test_torch_hub_load_local(name, kwargs, shape):
    model = torch.hub.load(str(REPO), name, source="local", pretrained=False, **kwargs).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 35, 41)).shape == shape


def test_torch_hub_pretrained_without_weights_is_clear():
    with pytest.raises(ValueError, match="no pretrained weights"):
        torch.hub.load(str(REPO), "unet_r34", source="local", pretrained=True)
