"""The weights format, save_pretrained / from_pretrained in every local form, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import segzoo
from segzoo.storage.format import (
    CONFIG_KEY,
    META_KEY,
    VERSION_KEY,
    read_header,
    write_weights,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = segzoo.create("deeplabv3plus_r50", encoder="test_resnet", num_classes=3).eval()
    for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):  # non-trivial statistics
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return m


X = torch.randn(2, 3, 45, 61)


def _same(a, b):
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(X), b.eval()(X), rtol=0, atol=0)


def test_header_is_self_describing(tmp_path, model):
    path = write_weights(model, tmp_path / "m.safetensors")
    header = read_header(path)
    assert json.loads(header[CONFIG_KEY]) == model.config.to_dict()
    assert header[VERSION_KEY] == segzoo.__version__
    meta = json.loads(header[META_KEY])
    assert meta["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    _same(segzoo.from_pretrained(path), model)  # one file is enough


def test_save_pretrained_layout_and_card(tmp_path, model):
    out = model.save_pretrained(
        tmp_path / "folder", class_names=["road", "car", "sky"], dataset="toy", metrics={"mIoU": 0.5},
        license="Apache-2.0",
    )
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == model.config.to_dict() and config["class_names"] == ["road", "car", "sky"]
    card = (out / "README.md").read_text()
    for text in ("deeplabv3plus", "road", "mIoU: 0.5", "toy", "Apache-2.0", "from_pretrained", "mean"):
        assert text in card
    assert oct((out / "model.safetensors").stat().st_mode & 0o777) != "0o600"
    loaded = segzoo.from_pretrained(out)
    assert loaded.meta.class_names == ["road", "car", "sky"]
    _same(loaded, model)


def test_class_names_must_match(tmp_path, model):
    with pytest.raises(ValueError, match="2 class names"):
        model.save_pretrained(tmp_path / "x", class_names=["a", "b"])
    assert not (tmp_path / "x" / "model.safetensors").exists()


def test_failed_save_keeps_previous_files(tmp_path, model, monkeypatch):
    folder = model.save_pretrained(tmp_path / "keep")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    import segzoo.storage.save as save_mod

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full while writing the card")

    monkeypatch.setattr(save_mod, "model_card", broken_card)
    other = segzoo.create("deeplabv3plus_r50", encoder="test_resnet", num_classes=3)
    with pytest.raises(RuntimeError, match="disk full"):
        other.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing changed, no temp left


def test_num_classes_override_reinitialises_head_with_warning(tmp_path, model):
    path = write_weights(model, tmp_path / "m.safetensors")
    with pytest.warns(UserWarning, match="re-initialised") as record:
        new = segzoo.from_pretrained(path, num_classes=7)
    message = str(record[0].message)
    assert "head.weight" in message and "head.bias" in message and "encoder" not in message
    assert new.num_classes == 7
    for key, value in model.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(new.state_dict()[key], value), key
    with pytest.warns(UserWarning, match="encoder.model.conv1"):
        segzoo.from_pretrained(path, in_channels=1)


def test_bad_sources_name_the_problem(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="accepted forms"):
        segzoo.from_pretrained(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="not a registered model name.*accepted forms"):
        segzoo.from_pretrained("unet_r34x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        segzoo.from_pretrained(tmp_path / "empty")
    good = write_weights(model, tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.safetensors.*not a readable safetensors"):
        segzoo.from_pretrained(truncated)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.safetensors"):
        segzoo.from_pretrained(text)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="without a segzoo config"):
        segzoo.from_pretrained(plain)
    for path in (truncated, text, plain):
        assert path.exists()  # nothing the user had is touched


def test_other_architecture_names_mismatched_keys(tmp_path, model):
    from safetensors import safe_open

    path = write_weights(model, tmp_path / "m.safetensors")
    with safe_open(str(path), "pt") as f:
        header = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    state["head.weight"] = torch.zeros(5, 256, 1, 1)
    del state["head.bias"]
    forged = tmp_path / "forged.safetensors"
    save_file(state, str(forged), metadata=header)
    with pytest.raises(ValueError, match=r"head\.weight: config \(3, 256, 1, 1\) vs file \(5, 256, 1, 1\).*"
                                         r"the file lacks.*head\.bias"):
        segzoo.from_pretrained(forged)


def test_not_strict_loads_what_fits(tmp_path, model):
    from safetensors import safe_open

    path = write_weights(model, tmp_path / "m.safetensors")
    with safe_open(str(path), "pt") as f:
        header, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    del state["head.bias"]
    save_file(state, str(tmp_path / "partial.safetensors"), metadata=header)
    with pytest.warns(UserWarning, match="head.bias"):
        loaded = segzoo.from_pretrained(tmp_path / "partial.safetensors", strict=False)
    assert torch.equal(loaded.state_dict()["head.weight"], model.state_dict()["head.weight"])


def test_relative_and_user_paths(tmp_path, model, monkeypatch):
    write_weights(model, tmp_path / "rel.safetensors")
    monkeypatch.chdir(tmp_path)
    _same(segzoo.from_pretrained("rel.safetensors"), model)
    monkeypatch.setenv("HOME", str(tmp_path))
    _same(segzoo.from_pretrained(Path("~/rel.safetensors")), model)
    assert os.path.exists(tmp_path / "rel.safetensors")
