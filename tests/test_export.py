"""ONNX export with dynamic batch, height and width: parity with PyTorch at sizes other than the example, refusal
(and no file) when the graph does not match, the CLI. Full-size named models: ``-m slow``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import segzoo
from conftest import TINY_SWIN_UNET
from segzoo.cli import main
from segzoo.deploy import ExportError, check_onnx, export_onnx
from segzoo.storage.format import write_weights

pytest.importorskip("onnxscript", reason="the export extra (onnxscript) is not installed")
ort = pytest.importorskip("onnxruntime")


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("name,kwargs", [
    ("deeplabv3plus_r50", {"encoder": "test_resnet"}),  # ASPP image pooling and two resizes
    ("unet_r18", {"encoder": "test_resnet", "aux_head": True}),  # padding to the divisor; aux output dropped
])
def test_dynamic_export_matches_pytorch_at_other_sizes(name, kwargs, tmp_path):
    model = segzoo.create(name, num_classes=4, **kwargs).eval()
    report = segzoo.export(model, str(tmp_path / "m.onnx"), example_size=(64, 96))
    assert [c["height"] for c in report["checks"]] != [64, 64] and all(
        c["max_abs_diff"] <= 1e-3 and c["argmax_agree"] == 1.0 for c in report["checks"])
    x = torch.randn(3, 3, 83, 45)  # a third size, batch 3, height and width not multiples of 32
    with torch.no_grad():
        expected = model(x).numpy()
    got = _run(tmp_path / "m.onnx", x)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-3
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_mismatch_is_refused_and_leaves_no_file(tmp_path):
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2).eval()
    with pytest.raises(ExportError, match=r"differs from PyTorch: max abs logit difference"):
        export_onnx(model, tmp_path / "m.onnx", example_size=(64, 64), atol=-1.0)  # nothing can match
    assert list(tmp_path.iterdir()) == []


def test_check_names_the_failing_size(tmp_path):
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2).eval()
    export_onnx(model, tmp_path / "static.onnx", dynamic=False, example_size=(64, 64))
    with pytest.raises(ExportError, match=r"1x3x97x131|at input size 1x97x131"):
        check_onnx(tmp_path / "static.onnx", model, [(1, 97, 131)])


def test_cli_exports_a_weights_file_and_refuses_to_overwrite(tmp_path, capsys):
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3)
    weights = write_weights(model, tmp_path / "w.safetensors")
    out = tmp_path / "w.onnx"
    assert main(["export", str(weights), str(out), "--size", "64", "96"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("{"):])
    assert report["path"] == str(out) and len(report["checks"]) == 3 and out.stat().st_size > 1000
    before = out.read_bytes()
    assert main(["export", str(weights), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before


def test_adaptive_pooling_layer_matches_torch_and_exports_at_every_size(tmp_path):
    """segzoo.layers.AdaptiveAvgPool2d: nn.AdaptiveAvgPool2d's values, and an ONNX graph that holds at sizes that
    do not divide evenly (nn.AdaptiveAvgPool2d's graph gathered out of range there: UPerNet's pyramid pooling)."""
    from segzoo.layers import AdaptiveAvgPool2d

    for size in [(4, 5), (7, 13), (1, 1), (3, 2)]:
        x = torch.randn(2, 4, *size) * 10
        for bins in (1, 2, 3, 6, (2, 5)):
            torch.testing.assert_close(AdaptiveAvgPool2d(bins)(x), torch.nn.AdaptiveAvgPool2d(bins)(x),
                                       atol=1e-5, rtol=1e-5)

    class Pyramid(torch.nn.Module):
        def __init__(self, pool):
            super().__init__()
            self.pool = pool

        def forward(self, x):
            return torch.nn.functional.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear")

    from torch.export import Dim
    shapes = {"x": {0: Dim("batch", min=1, max=8), 2: Dim("height", min=2, max=512), 3: Dim("width", min=2, max=512)}}
    torch.onnx.export(Pyramid(AdaptiveAvgPool2d(6)).eval(), (torch.randn(2, 3, 4, 5),), tmp_path / "p.onnx",
                      dynamo=True, input_names=["x"], dynamic_shapes=shapes, verbose=False)
    for size in [(5, 7), (13, 6), (4, 5)]:
        x = torch.randn(1, 3, *size)
        assert np.abs(_run(tmp_path / "p.onnx", x) - Pyramid(torch.nn.AdaptiveAvgPool2d(6))(x).numpy()).max() < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
@pytest.mark.parametrize("name", segzoo.list_models())
def test_every_named_model_exports_with_parity(name, suffix, tmp_path):
    model = segzoo.create(name).eval()
    report = segzoo.export(model, str(tmp_path / f"{name}{suffix}"), example_size=(96, 128))
    assert report["checks"] and all(c["max_abs_diff"] <= 1e-3 and c["argmax_agree"] == 1.0 for c in report["checks"])


@pytest.mark.parametrize("name,kwargs", [
    # test_resnet is avg-down: its dilated form uses timm's AvgPool2dSame, whose math.ceil torch.export cannot
    # serialise; the dilated EfficientNet exercises the same ASPP, pooling and resizes
    ("deeplabv3plus_r50", {"encoder": "test_efficientnet"}),
    ("unet_r18", {"encoder": "test_resnet"}),
])
def test_torch_export_program_matches_pytorch_at_other_sizes(name, kwargs, tmp_path):
    from segzoo.deploy import load_program

    model = segzoo.create(name, num_classes=4, **kwargs).eval()
    report = segzoo.export(model, str(tmp_path / "m.pt2"), example_size=(64, 96))
    assert report["format"] == "torch.export" and len(report["checks"]) == 3
    assert all(c["max_abs_diff"] <= 1e-3 and c["argmax_agree"] == 1.0 for c in report["checks"])
    program = load_program(tmp_path / "m.pt2")
    # off the divisor, and on it: a guard on the padding once made programs traced off it reject 64x128
    for x in (torch.randn(1, 3, 83, 45), torch.randn(2, 3, 64, 128)):
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x), atol=1e-4, rtol=1e-4)
    from segzoo.inference.tiling import predict_probs  # programs tile like the model

    x = torch.randn(1, 3, 90, 140)
    torch.testing.assert_close(predict_probs(program, x, tile=48, tta=("hflip",)),
                               predict_probs(model, x, tile=48, tta=("hflip",)), atol=1e-4, rtol=1e-4)
    low = model.input_divisor + 1
    assert program.limits["min_side"] == low
    with pytest.raises(ValueError, match=rf"at least {low}x{low} pixels, got 83x{low - 1}"):
        program(torch.randn(1, 3, 83, low - 1))


def test_export_format_comes_from_the_suffix(tmp_path):
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    with pytest.raises(ValueError, match=r"m\.tflite'.*\.onnx.*\.pt2"):
        segzoo.export(model, str(tmp_path / "m.tflite"))
    with pytest.raises(ValueError, match="opset applies to ONNX"):
        segzoo.export(model, str(tmp_path / "m.pt2"), opset=17)
    assert not list(tmp_path.iterdir())


def test_program_parity_failure_leaves_no_file(tmp_path, monkeypatch):
    import segzoo.deploy.program as program_mod

    real = program_mod.check_parity
    monkeypatch.setattr(program_mod, "check_parity",
                        lambda run, model, sizes, atol, what, **kw: real(lambda x: run(x) + 1.0, model, sizes, atol,
                                                                         what, **kw))
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    with pytest.raises(ExportError, match="exported program differs"):
        segzoo.export(model, str(tmp_path / "m.pt2"), example_size=(64, 64))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_swin_unet_exports_at_a_fixed_size_and_says_why(suffix, tmp_path):
    from segzoo.deploy import load_program

    model = segzoo.create("swin_unet_t", num_classes=3, **TINY_SWIN_UNET).eval()
    with pytest.warns(UserWarning, match=r"SwinUNetDecoder exports at a fixed size, batch 1 x 64x96.*shifted windows"):
        report = segzoo.export(model, str(tmp_path / f"m{suffix}"), example_size=(64, 96))
    assert report["dynamic"] is False and all(c["max_abs_diff"] <= 1e-3 for c in report["checks"])
    other = torch.randn(1, 3, 96, 64)
    if suffix == ".onnx":  # onnxruntime's own error names the size the graph takes
        with pytest.raises(Exception, match=r"Got: 96 Expected: 64"):
            _run(tmp_path / "m.onnx", other)
    else:
        with pytest.raises(ValueError, match=r"64x96"):
            load_program(tmp_path / "m.pt2")(other)


def test_parity_tolerates_only_flips_between_tied_scores():
    """A pruned CamVid model failed its export check with a 5e-6 logit difference: one pixel whose two best scores
    were tied swapped class. Such ties pass; a flip between scores far apart, or too large a difference, fails."""
    from segzoo.deploy.onnx import ExportError, check_parity

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.zeros(1, 2, 4, 4)
            self.logits[0, 0] = 1.0
            self.logits[0, 1, 0, 0] = 1.0 - 1e-6  # a near-tie at pixel (0, 0)

        def forward(self, x):
            return self.logits.clone()

    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    model.forward = Fixed().forward
    tie = Fixed().logits.clone()
    tie[0, 1, 0, 0] = 1.0 + 1e-6  # the tied pixel swaps
    result = check_parity(lambda x: tie.numpy(), model, [(1, 4, 4)])
    assert result[0]["tie_flips"] == 1 and result[0]["argmax_agree"] < 1.0
    real = Fixed().logits.clone()
    real[0, 1, 1, 1] = 1.0 + 5e-4  # 0 -> 1 at a pixel where the scores were 1 and 0 apart
    real[0, 0, 1, 1] = 1.0 - 5e-4
    with pytest.raises(ExportError, match="argmax agreement"):
        check_parity(lambda x: real.numpy(), model, [(1, 4, 4)])
