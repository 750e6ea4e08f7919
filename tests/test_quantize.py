"""Static INT8 (QDQ) ONNX for CPUs: the graph is quantized, keeps dynamic sizes, stays close to fp32; bad
calibration input and CLI misuse are clear errors. Figures on real weights: ``python -m benchmarks.deploy``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segzoo
from segzoo.cli import main
from segzoo.deploy import cpu_int8_support, quantize_onnx

pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    torch.manual_seed(0)
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 48 + 8 * i, 64), dtype=torch.uint8, generator=g) for i in range(4)]
    path = tmp_path_factory.mktemp("int8") / "m.int8.onnx"
    return model, path, quantize_onnx(model, path, images, example_size=(64, 64))


def test_graph_is_quantized_and_close_to_fp32_at_a_new_size(quantized):
    model, path, report = quantized
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > ops.count("Conv")
    assert report["calibration_images"] == 4 and 0.0 <= report["class_agreement_on_calibration"] <= 1.0
    x = torch.randn(2, 3, 75, 53)  # batch 2, a size seen neither in export nor calibration
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == expected.shape
    spread = expected.max() - expected.min()
    assert np.abs(got - expected).max() < 0.15 * spread  # 8-bit: close, not equal
    assert not np.allclose(got, expected, atol=1e-6)  # it really is another graph


def test_cpu_flags_decide_seven_bit_weights():
    vnni = cpu_int8_support("processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert vnni["vnni"] and not vnni["reduce_range"] and vnni["flags"] == ["avx512_vnni"]
    old = cpu_int8_support("flags : fpu sse avx2\n")
    assert not old["vnni"] and old["reduce_range"]


@pytest.mark.parametrize("images,match", [
    ([], "at least one calibration image"),
    ([torch.rand(3, 32, 32)], "calibration image 0: expected uint8"),
    ([torch.zeros(3, 32, 32, dtype=torch.uint8), np.zeros((32, 32, 1), np.uint8)], r"image\(s\) \[1\] have 1 channels"),
])
def test_bad_calibration_names_the_image(images, match, tmp_path):
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    with pytest.raises(ValueError, match=match):
        quantize_onnx(model, tmp_path / "m.onnx", images)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_int8_needs_calibration(tmp_path, capsys):
    assert main(["export", "unet_r18", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
