"""The real plugin in plugins/segzoo-extra-decoders, installed by the test environment."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

import segzoo
from segzoo.core.registry import plugin_status

PLUGIN = "segzoo-extra-decoders"


@pytest.fixture(scope="module", autouse=True)
def _installed():
    try:
        metadata.distribution(PLUGIN)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{PLUGIN} is not installed: the test environment must `pip install ./plugins/{PLUGIN}`")


def test_listed_with_its_source():
    assert {"fpn", "upernet"} <= set(segzoo.list_decoders())
    assert {"fpn_r50", "upernet_convnext_t"} <= set(segzoo.list_models())
    assert segzoo.model_info("fpn_r50")["source"] == PLUGIN
    rows = {(r.kind, r.name): r for r in plugin_status(probe=True) if r.distribution == PLUGIN}
    assert {k: r.state for k, r in rows.items()} == {
        ("decoder", "fpn"): "loaded",
        ("decoder", "upernet"): "loaded",
        ("model", "fpn_r50"): "loaded",
        ("model", "upernet_convnext_t"): "loaded",
        ("converter", "transformers_upernet"): "loaded",
    }


@pytest.mark.parametrize("decoder", ["fpn", "upernet"])
@pytest.mark.parametrize("encoder", ["test_resnet", "test_convnext"])
def test_plugin_decoders_build_and_train(decoder, encoder):
    model = segzoo.create_model(decoder, encoder, num_classes=3).train()
    y = model(torch.randn(2, 3, 67, 45))
    assert y.shape == (2, 3, 67, 45)
    y.mean().backward()


def test_plugin_named_model():
    model = segzoo.create("fpn_r50", num_classes=4, encoder="test_resnet").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4, 64, 64)
    assert model.config.decoder == "fpn"


def test_saved_model_records_the_plugin_and_loading_without_it_names_the_distribution(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from segzoo.storage.format import REQUIRES_KEY, read_header, read_weights

    model = segzoo.create_model("fpn", "test_resnet", num_classes=2)
    model.save_pretrained(str(tmp_path / "m"))
    weights = tmp_path / "m" / "model.safetensors"
    version = metadata.version(PLUGIN)
    assert json.loads(read_header(weights)[REQUIRES_KEY]) == [
        {"kind": "decoder", "name": "fpn", "distribution": PLUGIN, "version": version}]
    assert read_weights(weights).requires[0]["distribution"] == PLUGIN
    assert segzoo.from_pretrained(tmp_path / "m").config.decoder == "fpn"  # with the plugin: loads
    core = segzoo.create_model("unet", "test_resnet", num_classes=2)  # core + timm: nothing required
    core.save_pretrained(str(tmp_path / "core"))
    assert json.loads(read_header(tmp_path / "core" / "model.safetensors")[REQUIRES_KEY]) == []

    code = f"import segzoo; segzoo.from_pretrained({str(tmp_path / 'm')!r})"
    env = {**os.environ, "SEGZOO_DISABLE_PLUGINS": "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode != 0
    assert f"of the plugin '{PLUGIN}' (version {version} when saved)" in run.stderr
    assert f"pip install {PLUGIN}" in run.stderr and "decoder 'fpn'" in run.stderr


def _transformers_upernet(num_labels: int = 5):
    """A small transformers UperNet on ConvNeXt with random weights and BatchNorm statistics (nothing downloaded)."""
    from transformers import ConvNextConfig, UperNetConfig, UperNetForSemanticSegmentation

    backbone = ConvNextConfig(depths=[1, 1, 2, 1], hidden_sizes=[8, 16, 24, 32],
                              out_features=["stage1", "stage2", "stage3", "stage4"])
    config = UperNetConfig(backbone_config=backbone, hidden_size=16, num_labels=num_labels, use_auxiliary_head=True,
                           auxiliary_in_channels=24, auxiliary_channels=8,
                           id2label={i: f"class {i}" for i in range(num_labels)})
    torch.manual_seed(0)
    model = UperNetForSemanticSegmentation(config).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model


def test_transformers_upernet_converts_with_equal_logits(tmp_path):
    """The plugin's converter, reached through segzoo's transformers importer (model_type 'upernet'): logits equal
    transformers' at several sizes, the parameter count equal without the training-only auxiliary head."""
    from segzoo.cli import main
    from segzoo.convert import from_transformers

    theirs = _transformers_upernet()
    ours = from_transformers(theirs).eval()
    for size in ((64, 64), (96, 128), (160, 96)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(pixel_values=x).logits, atol=1e-4, rtol=0)
    without_aux = sum(p.numel() for n, p in theirs.named_parameters() if not n.startswith("auxiliary_head."))
    assert sum(p.numel() for p in ours.parameters()) == without_aux
    assert ours.meta.class_names == [f"class {i}" for i in range(5)]
    # a save_pretrained folder (a Hub snapshot's layout) through the command line
    theirs.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours"), "--from", "transformers"]) == 0
    loaded = segzoo.from_pretrained(tmp_path / "ours")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), theirs(pixel_values=x).logits, atol=1e-4, rtol=0)


def test_transformers_upernet_other_backbones_are_named():
    from segzoo.core.errors import InvalidValueError
    from segzoo_extra_decoders.convert import from_transformers_upernet

    state = _transformers_upernet().state_dict()

    class Other(torch.nn.Module):  # what a transformers UperNet on another backbone reports of itself
        config = type("Config", (), {"to_dict": staticmethod(lambda: {
            "model_type": "upernet", "backbone_config": {"model_type": "swin"}, "num_labels": 5})})()

        def state_dict(self, *args, **kwargs):
            return state

    with pytest.raises(InvalidValueError, match="converts ConvNeXt backbones, got 'swin'"):
        from_transformers_upernet(Other())
