"""hubconf.py: exactly the named models, lazily imported, loadable through torch.hub."""

from __future__ import annotations

import ast
import inspect

import pytest
import torch

import segzoo
from conftest import REPO


def _hub_entrypoints() -> list[str]:
    """What torch.hub.list reports for a local repo (the rule torch.hub applies to hubconf)."""
    if "source" in inspect.signature(torch.hub.list).parameters:
        return sorted(torch.hub.list(str(REPO), source="local"))
    module = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))  # the loader torch.hub.list uses
    return sorted(n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_"))


def test_lists_exactly_the_core_named_models():
    core = [n for n in segzoo.list_models() if segzoo.model_info(n)["source"] == "segzoo"]
    assert _hub_entrypoints() == core


def test_generated_from_the_registry_importing_only_segzoo_inside_a_function():
    """hubconf.py names no model itself (one source of names: the registry); every entry point has the builder's
    docstring and accepts create's keywords."""
    tree = ast.parse((REPO / "hubconf.py").read_text())
    assert [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))] == []
    imported = {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert imported == {"segzoo"}
    assert not [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    module = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))
    for name in _hub_entrypoints():
        fn = getattr(module, name)
        assert fn.__name__ == name and fn.__doc__.startswith(segzoo.model_info(name)["description"][:40]), name


def test_carvana_scale_picks_the_tag_where_the_model_is_named():
    with pytest.raises(ValueError, match=r"weights exist for scale \[0\.5, 1\.0\], got scale=0\.7"):
        torch.hub.load(str(REPO), "unet_carvana", source="local", pretrained=True, scale=0.7)
    with pytest.raises(ValueError, match=r"scale=0\.5 chooses unet_carvana's pretrained weights"):
        segzoo.create("unet_carvana", scale=0.5)


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
