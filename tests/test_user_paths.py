"""The paths a new user walks: evaluate a folder of their own, evaluate every kind of file predict takes,
fine-tune trained weights on their own classes, exports that describe themselves, overlays with a legend."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo.cli import main
from segzoo.data.normalize import normalize
from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Trainer

PALETTE = {"background": [0, 0, 0], "disc": [200, 40, 40], "square": [40, 200, 40], "triangle": [40, 40, 200]}
TINY = {"decoder": "unet", "encoder": "plain",
        "overrides": {"encoder_params": {"widths": [8, 16, 16]}, "decoder_channels": [8, 8], "upsampling": "bilinear"}}


def _recipe(root: Path, model: dict | None = None, **train) -> dict:
    return {
        "model": model or TINY,
        "data": {"root": str(root), "classes": SHAPE_CLASSES, "val_fraction": 0.25, "palette": PALETTE},
        "augment": {"crop_size": 32, "scale": [0.75, 1.25]},
        "train": {"epochs": 2, "batch_size": 4, "val_batch_size": 3, "lr": 0.01, "progress": False, "plots": False,
                  **train},
    }


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_images=20, size=32, seed=3)


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    Trainer(Recipe.from_dict(_recipe(shapes)), out).fit()
    return out / "best"


def _eval(capsys, *args) -> tuple[dict, str]:
    code = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), captured.err


def test_eval_a_folder_scores_every_pair_and_says_so(shapes, trained, tmp_path, capsys):
    result, err = _eval(capsys, "-w", trained, "--images", shapes / "images", "--masks", shapes / "masks",
                        "--plots", tmp_path / "plots")
    assert result["pairs"]["scored"] == result["pairs"]["found"] == 20
    assert "scoring 20 of 20 pairs: every pair of" in err and "class ids" in err
    assert "eval: 20 of 20 images" in err  # a progress line although stderr is not a terminal
    assert list(result["per_class"]) == SHAPE_CLASSES and "iou" not in result and "classes" not in result
    assert (tmp_path / "plots" / "confusion.png").stat().st_size > 1000
    # the recipe's split of the same folder: the count says it is a part
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_recipe(shapes)))
    part, err = _eval(capsys, recipe, "-w", trained)
    assert part["pairs"] == {"scored": 5, "found": 20, "source": part["pairs"]["source"]}
    assert "scoring 5 of 20 pairs: the val split" in err


def test_eval_a_folder_of_colour_masks_uses_the_weights_colours(shapes, trained, tmp_path, capsys):
    ids, _ = _eval(capsys, "-w", trained, "--images", shapes / "images", "--masks", shapes / "masks", "--quiet")
    (tmp_path / "colour").mkdir()
    table = np.array([PALETTE[c] for c in SHAPE_CLASSES], np.uint8)
    for mask in sorted((shapes / "masks").iterdir()):
        Image.fromarray(table[np.array(Image.open(mask))]).save(tmp_path / "colour" / mask.name)
    coloured, err = _eval(capsys, "-w", trained, "--images", shapes / "images", "--masks", tmp_path / "colour",
                          "--quiet")
    assert "masks read as colours" in err and coloured["miou"] == ids["miou"]
    # an explicit table, and a class the model does not have
    explicit, _ = _eval(capsys, "-w", trained, "--images", shapes / "images", "--masks", tmp_path / "colour",
                        "--colours", json.dumps(PALETTE), "--quiet")
    assert explicit["per_class"] == ids["per_class"]
    assert main(["eval", "-w", str(trained), "--images", str(shapes / "images"), "--masks", str(tmp_path / "colour"),
                 "--colours", json.dumps({"pyramid": [1, 2, 3]})]) == 2
    assert "pyramid" in capsys.readouterr().err


@pytest.mark.parametrize("args,match", [
    (["--images", "IMG"], "--images and --masks go together"),
    (["RECIPE", "--images", "IMG", "--masks", "MSK"], "not both"),
    ([], "not neither"),
    (["--images", "IMG", "--masks", "MSK", "--mask-values", "{0: 1"], "--mask-values takes JSON"),
    (["--images", "IMG", "--masks", "MSK", "--mask-values", "[1, 2]"], "mapping of raw mask values"),
    (["--images", "IMG", "--masks", "MSK", "--mask-values", "{}", "--colours", "{}"], "exclude each other"),
])
def test_eval_bad_options_are_named(shapes, trained, tmp_path, capsys, args, match):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_recipe(shapes)))
    subst = {"IMG": str(shapes / "images"), "MSK": str(shapes / "masks"), "RECIPE": str(recipe)}
    assert main(["eval", "-w", str(trained), *[subst.get(a, a) for a in args]]) == 2
    assert match in capsys.readouterr().err


def test_eval_takes_every_kind_of_model_predict_takes(shapes, trained, tmp_path, capsys):
    """Weights, fp32 ONNX, INT8 ONNX and .pt2: the same pairs, figures that agree with the weights'."""
    pytest.importorskip("onnxruntime")
    model = segzoo.from_pretrained(trained)
    segzoo.export(model, tmp_path / "m.onnx", example_size=(32, 32))
    segzoo.export(model, tmp_path / "m.pt2", example_size=(48, 48))
    images = [np.array(Image.open(p)) for p in sorted((shapes / "images").iterdir())[:4]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # INT8 may not be faster on a tiny model
        segzoo.quantize(model, images, example_size=(32, 32)).save(tmp_path / "m.int8.onnx")
    folder = ["--images", shapes / "images", "--masks", shapes / "masks", "--quiet"]
    reference, _ = _eval(capsys, "-w", trained, *folder)
    for name in ("m.onnx", "m.pt2", "m.int8.onnx"):
        result, err = _eval(capsys, "-w", tmp_path / name, *folder)
        assert result["pairs"]["scored"] == 20, name
        tolerance = 0.05 if "int8" in name else 1e-3
        assert abs(result["miou"] - reference["miou"]) <= tolerance, (name, result["miou"], reference["miou"])
    assert main(["predict", str(shapes / "images"), "-w", str(tmp_path / "m.pt2"), "-o", str(tmp_path / "p"),
                 "--quiet"]) == 0


def test_exports_describe_themselves_and_honour_the_umask(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    from segzoo.deploy import OnnxModel, load_program

    model = segzoo.from_pretrained(trained)
    old = os.umask(0o022)
    try:
        segzoo.export(model, tmp_path / "m.onnx", example_size=(32, 32))
        segzoo.export(model, tmp_path / "m.pt2", example_size=(48, 48))
    finally:
        os.umask(old)
    for name in ("m.onnx", "m.pt2"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    meta = json.loads(props["segzoo.meta"])
    assert meta["class_names"] == SHAPE_CLASSES and meta["preprocessing"]["mean"] == list(model.meta.preprocessing.mean)
    assert json.loads(props["segzoo.input"])["dtype"] == "float32"
    from segzoo.core.io import sha256_of

    assert json.loads(props["segzoo.source"])["sha256"] == sha256_of(trained / "model.safetensors")
    assert json.loads(props["segzoo.config"])["num_classes"] == 4
    onnx_model, program = OnnxModel.load(tmp_path / "m.onnx"), load_program(tmp_path / "m.pt2")
    assert onnx_model.meta.class_names == program.meta.class_names == SHAPE_CLASSES and program.num_classes == 4


def test_uint8_input_export_normalises_inside_the_graph(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from segzoo.deploy import OnnxModel, load_program

    model = segzoo.from_pretrained(trained)
    report = segzoo.export(model, tmp_path / "u8.onnx", example_size=(32, 32), uint8_input=True)
    assert report["uint8_input"] and all(c["max_abs_diff"] <= 1e-3 for c in report["checks"])
    session = ort.InferenceSession(str(tmp_path / "u8.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    image = np.random.default_rng(0).integers(0, 256, (40, 44, 3), dtype=np.uint8)
    raw = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
    logits = session.run(None, {"x": raw.numpy()})[0]
    with torch.no_grad():
        expected = model(normalize(raw, model.meta.preprocessing)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-3)
    # segzoo runs it like any other model (predict feeds it uint8)
    assert torch.equal(OnnxModel.load(tmp_path / "u8.onnx").predict(image), model.predict(image))
    segzoo.export(model, tmp_path / "u8.pt2", example_size=(48, 48), uint8_input=True)
    assert torch.equal(load_program(tmp_path / "u8.pt2").predict(image), model.predict(image))


def test_predict_one_image_gives_h_w_and_a_batch_n_h_w(trained):
    model = segzoo.from_pretrained(trained)
    image = np.random.default_rng(1).integers(0, 256, (30, 34, 3), dtype=np.uint8)
    assert model.predict(image).shape == (30, 34)
    assert model.predict(np.stack([image, image])).shape == (2, 30, 34)
    assert model.predict(torch.from_numpy(image).permute(2, 0, 1)).shape == (30, 34)


def test_from_pretrained_with_other_classes_drops_names_and_colours_together(trained, tmp_path):
    with pytest.warns(UserWarning, match="re-initialised"):
        model = segzoo.from_pretrained(trained, num_classes=2)
    assert model.meta.class_names is None and model.meta.class_colours is None
    model.save_pretrained(str(tmp_path / "two"))  # a model that could not be saved before
    assert segzoo.from_pretrained(tmp_path / "two").num_classes == 2


def _two_class_data(root: Path) -> Path:
    """The shapes data with every shape as one 'object' class: the user's own 2-class data."""
    data = write_shapes_dataset(root, n_images=16, size=32, seed=5)
    for mask in (data / "masks").iterdir():
        ids = np.array(Image.open(mask))
        Image.fromarray((ids > 0).astype(np.uint8)).save(mask)
    return data


def test_fine_tune_trained_weights_on_my_two_class_data(trained, tmp_path, capsys):
    """The README's example: a recipe whose model is `pretrained:` weights, two classes. The head is
    re-initialised (said once), everything else loaded, the weights' preprocessing and frozen-BN requirement kept,
    and the new card names the parent and its sha256."""
    from segzoo.core.config import Preprocessing
    from segzoo.storage.format import sha256_of

    parent = segzoo.from_pretrained(trained)
    parent.meta.preprocessing = Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    parent.meta.training = {"freeze_encoder_bn": True}
    parent.save_pretrained(str(tmp_path / "parent"))
    data = _two_class_data(tmp_path / "mine")
    recipe = {
        "model": {"pretrained": str(tmp_path / "parent"), "num_classes": 2},
        "data": {"root": str(data), "classes": ["background", "object"], "val_fraction": 0.25},
        "augment": {"crop_size": 32},
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.01, "progress": False, "plots": False},
    }
    with pytest.warns(UserWarning) as caught:
        trainer = Trainer(Recipe.from_dict(recipe), tmp_path / "run")
    reinit = [str(w.message) for w in caught if "re-initialised" in str(w.message)]
    assert len(reinit) == 1 and "head" in reinit[0]
    assert "freeze_encoder_bn=True" in capsys.readouterr().out
    assert trainer.cfg.freeze_encoder_bn is True
    assert trainer.model.meta.preprocessing.mean == (0.5, 0.5, 0.5)
    for key, value in parent.encoder.state_dict().items():  # the encoder was loaded, not re-initialised
        assert torch.equal(trainer.model.encoder.state_dict()[key], value), key
    trainer.fit()
    tuned = segzoo.from_pretrained(tmp_path / "run" / "best")
    assert tuned.num_classes == 2 and tuned.meta.class_names == ["background", "object"]
    assert tuned.meta.parent == {"source": str(tmp_path / "parent"),
                                 "sha256": sha256_of(tmp_path / "parent" / "model.safetensors")}
    card = (tmp_path / "run" / "best" / "README.md").read_text()
    assert "Fine-tuned from" in card and tuned.meta.parent["sha256"] in card
    # a recipe that states another normalisation or BN setting wins, with a warning naming both
    recipe["augment"]["preprocessing"] = {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}
    recipe["train"]["freeze_encoder_bn"] = False
    with pytest.warns(UserWarning, match="replaces the normalisation"), \
            pytest.warns(UserWarning, match="require True"):
        stated = Trainer(Recipe.from_dict(recipe), tmp_path / "run2")
    assert stated.cfg.freeze_encoder_bn is False and stated.model.meta.preprocessing.mean == (0.4, 0.4, 0.4)


def test_train_init_flag_fine_tunes_from_the_command_line(shapes, trained, tmp_path, capsys):
    data = _two_class_data(tmp_path / "mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({
        "model": {"name": "unet_r18", "overrides": {"encoder_weights": "ignored-with-init"}},
        "data": {"root": str(data), "classes": ["background", "object"], "val_fraction": 0.25},
        "augment": {"crop_size": 32}, "train": {"epochs": 1, "batch_size": 4, "progress": False, "plots": False}}))
    with pytest.warns(UserWarning, match="re-initialised"), \
            pytest.warns(UserWarning, match=r"--init .* replaces the recipe's model\.name='unet_r18'"):
        assert main(["train", str(recipe), "-o", str(tmp_path / "run"), "--init", str(trained)]) == 0
    tuned = segzoo.from_pretrained(tmp_path / "run" / "best")
    assert tuned.config.encoder.name == "plain" and tuned.meta.parent["source"] == str(trained)


@pytest.mark.parametrize("model,match", [
    ({"pretrained": "x", "name": "unet_r18"}, "drop model.name"),
    ({"pretrained": "x", "overrides": {"encoder_weights": "y"}}, "drop model.overrides.encoder_weights"),
    ({"pretrained": "x", "num_classes": 3}, "model.num_classes is 3"),
])
def test_bad_fine_tune_recipes_are_named(shapes, tmp_path, model, match):
    with pytest.raises(ValueError, match=match):
        Trainer(Recipe.from_dict(_recipe(shapes, model=model)), tmp_path)


def test_overlays_carry_a_class_legend(trained, tmp_path):
    # 160-pixel images: on the 32-pixel training images the panel of two or more predicted classes (10-pixel text)
    # covers the whole overlay, so whether the corner below changed hung on what the tiny model had learnt
    big = write_shapes_dataset(tmp_path / "big", n_images=2, size=160, seed=5)
    files = [str(p) for p in sorted((big / "images").iterdir())]
    assert main(["predict", *files, "-w", str(trained), "-o", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["predict", *files, "-w", str(trained), "-o", str(tmp_path / "b"), "--quiet", "--no-legend"]) == 0
    name = Path(files[0]).stem + "_overlay.png"
    with_legend = np.array(Image.open(tmp_path / "a" / name))
    without = np.array(Image.open(tmp_path / "b" / name))
    assert with_legend.shape == without.shape
    corner = (slice(0, 8), slice(0, 8))
    assert not np.array_equal(with_legend[corner], without[corner])
    assert np.array_equal(with_legend[-8:, -8:], without[-8:, -8:])  # the rest of the overlay is untouched


def test_small_overlays_are_enlarged_to_be_seen(shapes, trained, tmp_path):
    from segzoo.api import eval_transform, load
    from segzoo.inference.predictor import predict_files

    model, transform = load(trained), eval_transform(trained)
    image = sorted((shapes / "images").iterdir())[0]
    predict_files(model, transform, [image], tmp_path, progress=False, overlay_min_side=100)
    assert Image.open(tmp_path / f"{image.stem}_overlay.png").size == (128, 128)  # 32 x 4
    assert Image.open(tmp_path / f"{image.stem}.png").size == (32, 32)  # class ids stay pixel-aligned


def test_predictions_plot_has_a_class_legend(shapes, tmp_path, monkeypatch):
    """predictions.png names the classes its colours stand for."""
    import matplotlib.figure

    trainer = Trainer(Recipe.from_dict(_recipe(shapes, epochs=1, plots=True)), tmp_path)
    seen = []
    original = matplotlib.figure.Figure.legend
    monkeypatch.setattr(matplotlib.figure.Figure, "legend",
                        lambda self, *a, **k: seen.append(k) or original(self, *a, **k))
    trainer.fit()
    labels = [h.get_label() for call in seen for h in call.get("handles", [])]
    assert labels == SHAPE_CLASSES and (tmp_path / "predictions.png").stat().st_size > 1000


def test_the_readme_fine_tune_example_runs(trained, tmp_path):
    """The Training page's fine-tune recipe, verbatim but for the parent (a tiny model), the data folder and the
    schedule, trains end to end."""
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    block = re.search(r"```yaml\n(  # my\.yaml: fine-tune.*?)```", readme, re.S).group(1)
    recipe = yaml.safe_load("\n".join(line[2:] for line in block.splitlines()))
    assert recipe["model"] == {"pretrained": "deeplabv3plus_mnv2.camvid", "num_classes": 2}
    recipe["model"]["pretrained"] = str(trained)
    recipe["data"]["root"] = str(_two_class_data(tmp_path / "mine"))
    recipe["augment"]["crop_size"] = 32
    recipe["train"].update(epochs=1, batch_size=4, progress=False, plots=False)
    with pytest.warns(UserWarning, match="re-initialised"):
        summary = Trainer(Recipe.from_dict(recipe), tmp_path / "run").fit()
    assert summary["reason"] == "completed"
    assert segzoo.from_pretrained(tmp_path / "run" / "best").meta.class_names == ["background", "object"]
