"""The inference fast path: same logits as the model (within the documented tolerance), faster structure."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import segzoo
from conftest import TINY_SWIN_UNET, randomize_bn
from segzoo.inference.fast import fold_batchnorm


@pytest.mark.parametrize("name,encoder", [
    ("unet_r34", "test_resnet"), ("deeplabv3plus_r50", "test_resnet"), ("deeplabv3_r50", "test_efficientnet"),
    ("fcn_r50", "test_convnext"), ("unet_carvana", None), ("swin_unet_t", None),
])
def test_optimize_same_logits_and_argmax(name, encoder):
    kw = {"encoder": encoder} if encoder else {}
    if name == "unet_carvana":
        kw = {"encoder_params": {"widths": (8, 16, 32)}, "decoder_channels": (16, 8)}
    if name == "swin_unet_t":
        kw = TINY_SWIN_UNET
    model = randomize_bn(segzoo.create(name, num_classes=5, **kw))
    fast = segzoo.optimize(model)
    x = torch.randn(2, 3, 61, 83)
    with torch.no_grad():
        ref = model(x)
    out = fast(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out - ref).abs().max() <= 1e-3  # fp32: folding only reorders arithmetic
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.999
    assert not any(p.requires_grad for p in fast.parameters())
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert (fast.folded_batchnorms > 0) == has_bn
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == has_bn  # the original is untouched


def test_folding_removes_conv_batchnorm_pairs_only():
    model = randomize_bn(segzoo.create("unet_r18", encoder="test_resnet", num_classes=3))
    before = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    n = fold_batchnorm(model, x)
    after = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert n == before - after and n >= before - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


def test_optimize_warns_once_where_this_cpu_only_emulates_bf16(monkeypatch):
    """An explicit bf16 fast path on a CPU without native bf16 (AVX2 alone) runs many times slower than fp32: one
    warning says so; fp32, and bf16 where the CPU has it, say nothing."""
    from segzoo.inference import fast

    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2).eval()
    monkeypatch.setattr(fast, "native_bf16", lambda device: False)
    with pytest.warns(RuntimeWarning, match=r"bfloat16\) on a CPU without AVX512-BF16 or AMX") as caught:
        segzoo.optimize(model, dtype=torch.bfloat16)
    assert len([w for w in caught if "emulates bf16" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        segzoo.optimize(model, dtype=None)
        segzoo.optimize(model)  # auto: fp32 on the CPU
        monkeypatch.setattr(fast, "native_bf16", lambda device: True)
        segzoo.optimize(model, dtype=torch.bfloat16)


def test_optimize_bf16_within_tolerance():
    model = randomize_bn(segzoo.create("unet_r18", encoder="test_resnet", num_classes=4))
    fast = segzoo.optimize(model, dtype=torch.bfloat16)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    out = fast(x)
    assert torch.allclose(out, ref, rtol=5e-2, atol=5e-2 * ref.abs().max().item())
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.95


def test_predict_uint8_numpy_and_cache():
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3).eval()
    images = torch.randint(0, 256, (2, 3, 40, 50), dtype=torch.uint8)
    from segzoo.data import normalize

    with torch.no_grad():
        expected = model(normalize(images, model.meta.preprocessing)).argmax(1)
    pred = model.predict(images)
    assert pred.shape == (2, 40, 50) and (pred == expected).float().mean() > 0.999
    hwc = images[0].permute(1, 2, 0).numpy()
    assert torch.equal(model.predict(np.ascontiguousarray(hwc)), pred[0])  # one image: (H, W)
    cached = model.__dict__["_fast_cache"][2]
    model.predict(images)
    assert model.__dict__["_fast_cache"][2] is cached
    with torch.no_grad():
        model.head.bias.add_(5.0)  # new weights: the optimised copy is rebuilt
    model.predict(images)
    assert model.__dict__["_fast_cache"][2] is not cached
    with pytest.raises(TypeError, match="list"):
        model.predict([1, 2])


def test_optimize_compile_backend_runs():
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    fast = segzoo.optimize(model)
    fast.model = torch.compile(fast.model, backend="eager")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model.eval()(x), rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_optimize_compile_swin_unet_at_two_sizes():
    """Inductor, as optimize(compile=True) runs it, on a second input size: a recompile (about 30 s here), where
    symbolic sizes (torch's default after a size change) had Swin-UNet in the shape solver for over ten minutes."""
    torch._dynamo.reset()
    model = segzoo.create("swin_unet_t", num_classes=3, **TINY_SWIN_UNET).eval()
    fast = segzoo.optimize(model, compile=True)
    for size in [(64, 64), (64, 96)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), model(x), rtol=1e-3, atol=1e-3)


def test_folding_that_would_change_outputs_falls_back():
    """A convolution whose raw output is also used outside its BatchNorm (functionally) must not be folded."""
    class Reuse(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.num_classes, self.in_channels = 4, 3

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # raw conv output reused: folding would change it

    model = randomize_bn(Reuse())
    with pytest.warns(RuntimeWarning, match="changed this model's outputs"):
        fast = segzoo.optimize(model)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x))
    assert fast.folded_batchnorms == 0


def test_class_ids_are_argmax_ties_and_nan_included():
    """class_ids uses max(1).indices (faster on CPU): the same ids as argmax(1), first maximum on ties, NaN first."""
    from segzoo.core.outputs import class_ids

    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        scores = torch.randint(0, 3, (2, 7, 9, 11), generator=generator).float()  # many ties
        scores[0, 4, 2, 3] = float("nan")
        assert torch.equal(class_ids(scores), scores.argmax(1))
