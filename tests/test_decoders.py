"""Every decoder with several encoders (CNN and transformer): shapes, gradients, sizes, strides."""

from __future__ import annotations

import pytest
import torch

import segzoo
from segzoo.encoders import OutputStrideError

TINY_SWIN = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "window_size": 4}
# decoder parameters that keep the test models tiny
SMALL = {
    "unet": {"decoder_channels": (16, 16, 8, 8)},
    "fcn": {"channels": 16},
    "deeplabv3": {"channels": 16},
    "deeplabv3plus": {"channels": 16, "low_level_channels": 8},
    "swin_unet": {"depths": (1, 1, 1), "window_size": 4, "head_dim": 8},
    "segformer": {"channels": 16},
    "lraspp": {"channels": 16},
}
ENCODERS = {
    "test_resnet": {},
    "test_efficientnet": {},
    "test_convnext": {},
    "test_vit": {},
    "swin": {"encoder": "swin_tiny_patch4_window7_224", "encoder_params": TINY_SWIN},
    "plain": {"encoder": "plain", "encoder_params": {"widths": (8, 16, 16, 32, 32)}},
}
# combinations the design does not allow: each must fail with a clear message
UNSUPPORTED = {
    ("deeplabv3plus", "test_vit"): "reduction 4",
    ("swin_unet", "test_vit"): "needs 4 encoder features",
    ("lraspp", "test_vit"): "needs an encoder feature at low_reduction=8",
}
ALL = [(d, e) for d in SMALL for e in ENCODERS if (d, e) not in UNSUPPORTED]


def make(decoder: str, encoder: str, num_classes: int = 3, **kw):
    spec = dict(ENCODERS[encoder])
    name = spec.pop("encoder", encoder)
    params = spec.pop("encoder_params", None)
    return segzoo.create_model(
        decoder, name, num_classes, encoder_params=params, **{**SMALL[decoder], **kw}
    )


@pytest.mark.parametrize("decoder,encoder", ALL)
def test_odd_size_forward_and_backward(decoder, encoder):
    model = make(decoder, encoder).train()
    x = torch.randn(2, 3, 97, 131, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 3, 97, 131)
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("decoder,encoder", list(UNSUPPORTED))
def test_impossible_combinations_say_why(decoder, encoder):
    with pytest.raises(ValueError, match=UNSUPPORTED[(decoder, encoder)]):
        make(decoder, encoder)


@pytest.mark.parametrize("encoder", ["plain", "swin", "test_vit"])
def test_explicit_stride_on_undilatable_encoder_raises(encoder):
    with pytest.raises(OutputStrideError, match="output_stride"):
        make("deeplabv3", encoder, output_stride=8)


def test_design_stride_applies_where_encoder_can_dilate():
    assert max(make("deeplabv3", "test_resnet").encoder.reductions) == 8  # DeepLabV3's design stride
    assert max(make("deeplabv3plus", "test_resnet").encoder.reductions) == 16
    assert max(make("deeplabv3", "swin").encoder.reductions) == 32  # Swin cannot dilate: natural stride


@pytest.mark.parametrize("decoder", list(SMALL))
@pytest.mark.parametrize("in_channels", [1, 4])
def test_in_channels(decoder, in_channels):
    encoder = "swin" if decoder == "swin_unet" else "test_resnet"
    model = make(decoder, encoder, in_channels=in_channels).eval()
    with torch.no_grad():
        assert model(torch.randn(1, in_channels, 40, 56)).shape == (1, 3, 40, 56)


@pytest.mark.parametrize("decoder", ["unet", "fcn", "deeplabv3", "deeplabv3plus"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_strides(decoder, output_stride):
    model = make(decoder, "test_resnet", output_stride=output_stride).eval()
    assert max(model.encoder.reductions) == output_stride
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 70)).shape == (1, 3, 50, 70)


@pytest.mark.parametrize("decoder", list(SMALL))
def test_batch_of_one_in_train_mode(decoder):
    """Including the ASPP decoders, whose image pooling fails at batch 1 in torchvision and smp."""
    encoder = "swin" if decoder == "swin_unet" else "test_resnet"
    model = make(decoder, encoder).train()
    y = model(torch.randn(1, 3, 64, 64))
    y.mean().backward()
    assert y.shape == (1, 3, 64, 64) and torch.isfinite(y).all()


def test_unet_upsampling_modes():
    transposed = {}
    for mode in ("nearest", "bilinear", "transposed"):
        model = make("unet", "test_resnet", upsampling=mode).eval()
        transposed[mode] = sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
        with torch.no_grad():
            assert model(torch.randn(1, 3, 33, 47)).shape == (1, 3, 33, 47)
    assert transposed == {"nearest": 0, "bilinear": 0, "transposed": 4}
    with pytest.raises(ValueError, match="upsampling"):
        make("unet", "test_resnet", upsampling="cubic")


def test_unet_too_many_blocks():
    with pytest.raises(ValueError, match="decoder_channels"):
        make("unet", "test_resnet", decoder_channels=(8,) * 7)


def test_fcn_skip_fusion():
    plain = make("fcn", "test_resnet", output_stride=32).eval()
    fused = make("fcn", "test_resnet", output_stride=32, skip_fusion=True).eval()
    assert plain.decoder.output_reduction == 32 and fused.decoder.output_reduction == 8
    with torch.no_grad():
        assert fused(torch.randn(1, 3, 61, 77)).shape == (1, 3, 61, 77)


def test_deeplabv3_separable_and_rates():
    dense = make("deeplabv3", "test_resnet", atrous_rates=(1, 2, 3))
    separable = make("deeplabv3", "test_resnet", atrous_rates=(1, 2, 3), separable=True)
    assert sum(p.numel() for p in separable.parameters()) < sum(p.numel() for p in dense.parameters())
    assert [b[0].dilation for b in dense.decoder.aspp.branches[1:4]] == [(1, 1), (2, 2), (3, 3)]
    with pytest.raises(ValueError, match="atrous_rates"):
        make("deeplabv3", "test_resnet", atrous_rates=(0, 2))


def test_unknown_decoder_parameter_lists_accepted():
    with pytest.raises(TypeError, match="decoder_channels"):
        make("unet", "test_resnet", decoder_chanels=(8,))
