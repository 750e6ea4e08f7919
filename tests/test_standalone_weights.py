"""A saved model stands alone: loading reads its own file and nothing else; recipes name encoder weights and
datasets, never machine paths."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import segzoo
from segzoo.data.dataset import resolve_data_root
from segzoo.encoders.weights import resolve_encoder_weights
from segzoo.storage.format import CONFIG_KEY, write_weights
from segzoo.training.recipe import Recipe

X = torch.randn(1, 3, 64, 64)


def _backbone_file(path):
    """A timm-layout state dict for the test_resnet backbone, as a pretrained encoder file would be."""
    import timm

    save_file(timm.create_model("test_resnet").state_dict(), str(path))
    return path


def test_trained_model_loads_after_its_encoder_file_is_gone(tmp_path):
    init = _backbone_file(tmp_path / "backbone.safetensors")
    with pytest.warns(UserWarning, match="classifier|ignored"):
        model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3, encoder_weights=str(init)).eval()
    out = model.save_pretrained(tmp_path / "run", class_names=["a", "b", "c"])
    init.unlink()  # the file the encoder started from is gone, as on another machine

    loaded = segzoo.from_pretrained(out)
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)
    assert loaded.config.encoder.weights is None  # rebuilding needs nothing but the file
    assert loaded.meta.encoder_weights == str(init)  # provenance kept
    assert str(init) in (out / "README.md").read_text()
    assert json.loads((out / "config.json").read_text())["model"]["encoder"]["weights"] is None


def test_old_file_naming_hub_weights_never_downloads(tmp_path, monkeypatch):
    """A header written before the rule (encoder weights 'imagenet' in the config) loads offline."""
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2).eval()
    path = write_weights(model, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(header[CONFIG_KEY])
    config["encoder"]["weights"] = "imagenet"
    save_file(state, str(path), metadata={**header, CONFIG_KEY: json.dumps(config)})

    import timm

    real = timm.create_model

    def no_pretrained(*args, **kwargs):
        assert not kwargs.get("pretrained"), "loading a segzoo file must not fetch encoder weights"
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_pretrained)
    loaded = segzoo.from_pretrained(path)
    assert loaded.meta.encoder_weights == "imagenet"
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)


def test_encoder_weights_by_name_from_segzoo_weights(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    _backbone_file(folder / "resnet_toy.in1k.safetensors")
    monkeypatch.setenv("SEGZOO_WEIGHTS", str(folder))
    assert resolve_encoder_weights("resnet_toy.in1k") == folder / "resnet_toy.in1k.safetensors"
    # a path written on another machine is found by its file name
    assert resolve_encoder_weights("/elsewhere/resnet_toy.in1k.safetensors") == folder / "resnet_toy.in1k.safetensors"
    with pytest.warns(UserWarning):
        model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2, encoder_weights="resnet_toy.in1k")
    assert model.config.encoder.weights == "resnet_toy.in1k"


def test_missing_encoder_weights_name_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGZOO_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as info:
        segzoo.create("unet_r18", encoder="test_resnet", encoder_weights="nothing.in1k")
    message = str(info.value)
    assert "'nothing.in1k'" in message and str(tmp_path / "w") in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message and "SEGZOO_WEIGHTS" in message


def test_bundled_recipes_name_no_machine_paths():
    for name in ("camvid", "nuclei", "aerial"):
        recipe = Recipe.load(name)
        assert recipe.model.overrides["encoder_weights"] == "mobilenetv2_100.coral_in1k"
        assert recipe.data.root == name  # parsing resolves nothing


def test_data_root_from_segzoo_data(tmp_path, monkeypatch):
    (tmp_path / "data" / "toy").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEGZOO_DATA", str(tmp_path / "data"))
    assert resolve_data_root("toy") == tmp_path / "data" / "toy"
    monkeypatch.delenv("SEGZOO_DATA")
    with pytest.raises(FileNotFoundError, match=r"'toy' not found.*SEGZOO_DATA is not set"):
        resolve_data_root("toy")
    shutil.rmtree(tmp_path / "data")
    monkeypatch.setenv("SEGZOO_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "data" / "toy")):
        resolve_data_root("toy")
