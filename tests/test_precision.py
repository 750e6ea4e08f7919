"""Training precision by CPU: ``train.amp: auto`` (the default) picks bf16 only where the device computes it
natively; an explicit bf16 on a CPU that emulates it trains, with one warning giving the measured cost."""

from __future__ import annotations

import warnings

import pytest
import torch

from segzoo.core import device as device_module
from segzoo.data.synthetic import write_shapes_dataset
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Trainer, resolve_amp

CPU = torch.device("cpu")
AVX2_ONLY = frozenset({"avx", "avx2", "fma"})
AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})


@pytest.mark.parametrize("flags,expected", [(AVX2_ONLY, "none"), (AMX, "bf16"),
                                            (frozenset({"avx512_bf16"}), "bf16"), (frozenset(), "none")])
def test_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch, flags, expected):
    monkeypatch.setattr(device_module, "cpu_flags", lambda: flags)
    assert resolve_amp("auto", CPU) == expected


def test_explicit_bf16_on_an_emulating_cpu_warns_once_with_the_cost(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_flags", lambda: AVX2_ONLY)
    with pytest.warns(UserWarning, match=r"emulates bf16 here, measured 46x slower.*1,209 s vs 26 s") as seen:
        assert resolve_amp("bf16", CPU) == "bf16"
    assert len(seen) == 1
    monkeypatch.setattr(device_module, "cpu_flags", lambda: AMX)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_amp("bf16", CPU) == "bf16" and resolve_amp("none", CPU) == "none"


def test_the_trainer_resolves_the_default(monkeypatch, tmp_path):
    root = write_shapes_dataset(tmp_path / "data", n_images=8, size=32)
    recipe = Recipe.from_dict({
        "model": {"decoder": "unet", "encoder": "plain",
                  "overrides": {"encoder_params": {"widths": [8, 16]}, "decoder_channels": [8]}},
        "data": {"root": str(root), "classes": ["background", "disc", "square", "triangle"]},
        "augment": {"crop_size": 32}, "train": {"epochs": 1, "batch_size": 2, "progress": False, "plots": False}})
    assert recipe.train.amp == "auto"
    monkeypatch.setattr(device_module, "cpu_flags", lambda: AVX2_ONLY)
    trainer = Trainer(recipe, tmp_path / "a")
    assert trainer.amp == "none" and trainer.amp_dtype is None
    monkeypatch.setattr(device_module, "cpu_flags", lambda: AMX)
    trainer = Trainer(recipe, tmp_path / "b")
    assert trainer.amp == "bf16" and trainer.amp_dtype == torch.bfloat16
