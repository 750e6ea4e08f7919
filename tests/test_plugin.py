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
