"""Issue 43, class 3: a binary model (``num_classes=1``: one logit, class 1 where it is positive) predicts two
labels everywhere a model's classes are counted: overlays, class-id files, eval, train validation, exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import segzoo
from segzoo.cli import main
from segzoo.core.config import ModelMeta, label_count
from segzoo.core.errors import InvalidValueError

TINY = {"encoder_params": {"widths": [8, 16]}, "decoder_channels": [8]}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Six 32x32 image/mask pairs with foreground squares, and a binary model biased to predict foreground."""
    root = tmp_path_factory.mktemp("binary")
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        mask = np.zeros((32, 32), np.uint8)
        mask[4 + i:20 + i, 8:24] = 1
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(root / "data" / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "data" / "masks" / f"{i}.png")
    model = segzoo.create_model("unet", "plain", 1, **TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") and p.numel() == 1:  # the head's bias: every pixel foreground
                p.fill_(5.0)
    model.meta.class_names = ["background", "square"]
    model.save_pretrained(root / "weights")
    return root


def test_label_count():
    assert [label_count(n) for n in (1, 2, 3, 19)] == [2, 2, 3, 19]
    ModelMeta(class_names=["bg", "fg"]).check(1)
    with pytest.raises(InvalidValueError, match=r"3 class names .* for a binary model \(2 classes\)"):
        ModelMeta(class_names=["a", "b", "c"]).check(1)


def test_predict_writes_ids_and_an_overlay_with_two_colours(world, tmp_path):
    assert main(["predict", str(world / "data" / "images"), "-w", str(world / "weights"), "-o",
                 str(tmp_path / "out")]) == 0
    ids = np.asarray(Image.open(tmp_path / "out" / "0.png"))
    assert set(np.unique(ids).tolist()) == {1}
    overlay = np.asarray(Image.open(tmp_path / "out" / "0_overlay.png"))
    assert overlay.ndim == 3 and overlay.shape[2] == 3


def test_eval_scores_background_and_foreground(world, capsys):
    data = world / "data"
    assert main(["eval", "-w", str(world / "weights"), "--images", str(data / "images"), "--masks",
                 str(data / "masks"), "--quiet"]) == 0
    out = capsys.readouterr().out
    report = yaml.safe_load(out[out.index("{"):])  # the JSON report (YAML reads JSON)
    assert set(report["per_class"]) == {"background", "square"}
    assert report["per_class"]["background"]["iou"] == 0.0  # every pixel predicted foreground
    assert 0.0 < report["per_class"]["square"]["iou"] < 1.0


def test_train_a_binary_model_validates_and_saves(world, tmp_path):
    recipe = {"model": {"decoder": "unet", "encoder": "plain", "num_classes": 1, "overrides": TINY},
              "data": {"root": str(world / "data"), "classes": ["background", "square"], "val_fraction": 0.34},
              "augment": {"crop_size": 32},
              "train": {"epochs": 1, "batch_size": 2, "progress": False, "plots": True}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "run")]) == 0
    best = segzoo.from_pretrained(tmp_path / "run" / "best")
    assert best.num_classes == 1 and best.meta.class_names == ["background", "square"]
    assert (tmp_path / "run" / "predictions.png").is_file()


def test_a_binary_recipe_with_three_classes_is_refused(world, tmp_path, capsys):
    recipe = {"model": {"decoder": "unet", "encoder": "plain", "num_classes": 1, "overrides": TINY},
              "data": {"root": str(world / "data"), "classes": ["a", "b", "c"]},
              "train": {"epochs": 1, "progress": False, "plots": False}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "run")]) == 2
    assert "a binary model, num_classes 1, has 2" in capsys.readouterr().err


def test_a_binary_onnx_export_predicts_and_evaluates(world, tmp_path):
    from segzoo.deploy import export_onnx
    from segzoo.inference.runtime import OnnxModel

    model = segzoo.from_pretrained(world / "weights")
    export_onnx(model, tmp_path / "m.onnx", example_size=(32, 32))
    onnx_model = OnnxModel.load(tmp_path / "m.onnx")
    image = np.asarray(Image.open(world / "data" / "images" / "0.png"))
    assert torch.equal(onnx_model.predict(image), model.predict(image))
    assert main(["predict", str(world / "data" / "images"), "-w", str(tmp_path / "m.onnx"), "-o",
                 str(tmp_path / "out")]) == 0
