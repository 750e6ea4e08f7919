"""Issue 47: ``predict`` of exported files runs the graph's predict form (uint8 in, class ids out, inside the
runtime), and it gives the class ids of the file's own logits: float- and uint8-input graphs, binary models,
fixed-size graphs, INT8; onnxruntime and OpenVINO."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segzoo
from segzoo.core.errors import InvalidValueError
from segzoo.core.outputs import class_ids
from segzoo.data.normalize import normalize

pytest.importorskip("onnxruntime")

TINY = {"encoder_params": {"widths": [8, 16]}, "decoder_channels": [8]}

SUFFIXES = [".onnx", pytest.param(".xml", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("openvino") is None, reason="OpenVINO is not installed"))]


def _load(path):
    from segzoo.inference.runtime import OnnxModel, OpenVinoModel

    return OnnxModel.load(path) if path.suffix == ".onnx" else OpenVinoModel.load(path)


def _model(num_classes: int) -> segzoo.SegmentationModel:
    torch.manual_seed(0)
    return segzoo.create_model("unet", "plain", num_classes, **TINY).eval()


def _images(n: int, height: int, width: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(n).integers(0, 256, (n, 3, height, width), dtype=np.uint8))


def _logits_must_not_run(loaded, monkeypatch) -> None:
    def refuse(array):
        raise AssertionError("predict of an image at its own size ran the logits graph")

    monkeypatch.setattr(loaded, "_run", refuse)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("num_classes", [3, 1])
@pytest.mark.parametrize("uint8_input", [False, True])
def test_predict_form_gives_the_class_ids_of_the_files_logits(suffix, num_classes, uint8_input, tmp_path,
                                                              monkeypatch):
    model = _model(num_classes)
    path = tmp_path / f"m{suffix}"
    segzoo.export(model, str(path), example_size=(64, 64), uint8_input=uint8_input)
    loaded = _load(path)
    images = _images(2, 40, 56)
    expected = class_ids(loaded(normalize(images, model.meta.preprocessing)))
    got = loaded.class_ids_of_images(images)
    assert got.dtype == torch.int64 and got.shape == (2, 40, 56)
    assert int((got != expected).sum()) <= 2  # float rounding of the in-graph normalisation: near-ties only
    if num_classes == 1:
        assert set(got.unique().tolist()) <= {0, 1}
    _logits_must_not_run(loaded, monkeypatch)
    hwc = images[0].permute(1, 2, 0).numpy()
    assert torch.equal(loaded.predict(hwc), got[0])
    assert torch.equal(loaded.predict(images), got)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_fixed_size_graph_predicts_a_batch_one_image_at_a_time(suffix, tmp_path, monkeypatch):
    model = _model(3)
    path = tmp_path / f"m{suffix}"
    segzoo.export(model, str(path), example_size=(48, 64), dynamic=False)
    loaded = _load(path)
    loaded.report["fixed_size"] = [48, 64]  # as a fixed-size architecture's file says (Swin-UNet)
    images = _images(3, 48, 64)
    expected = class_ids(loaded(normalize(images, model.meta.preprocessing)))
    assert int((loaded.class_ids_of_images(images) != expected).sum()) <= 2
    with pytest.raises(InvalidValueError, match=r"takes only 48x64 inputs, got 40x64"):
        loaded.class_ids_of_images(_images(1, 40, 64))
    _logits_must_not_run(loaded, monkeypatch)
    assert loaded.predict(images).shape == (3, 48, 64)


def test_tiled_and_tta_predictions_still_blend_the_logits_graph(tmp_path):
    model = _model(3)
    segzoo.export(model, str(tmp_path / "m.onnx"), example_size=(64, 64))
    loaded = _load(tmp_path / "m.onnx")
    calls = []
    run = loaded._run
    loaded._run = lambda array: calls.append(array.shape) or run(array)
    image = _images(1, 50, 70)[0]
    tiled = loaded.predict(image, tile=32, tta=("hflip",))
    assert calls and (tiled == model.predict(image, tile=32, tta=("hflip",))).float().mean() > 0.999


def test_int8_predict_form_agrees_with_its_logits(tmp_path):
    from segzoo.deploy import quantize

    model = _model(3)
    images = [_images(1, 64, 64)[0].permute(1, 2, 0).numpy() for _ in range(2)]
    q = quantize(model, images, example_size=(64, 64))
    batch = _images(2, 64, 64)
    expected = class_ids(q(normalize(batch, model.meta.preprocessing)))
    # INT8 rounds the normalised input to its quantization grid: a last-bit difference of the in-graph
    # normalisation can move a pixel across a rounding boundary
    assert (q.predict(batch) == expected).float().mean() > 0.98
