"""Named models: reference-design equalities, exact re-creation from config, compile, bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import segzoo
from conftest import n_params
from segzoo import ModelConfig, build_model

CORE_MODELS = [
    "unet_carvana", "unet_r18", "unet_r34", "unet_r50", "unet_mnv2", "fcn_r50", "fcn_r101",
    "deeplabv3_r50", "deeplabv3_r101", "deeplabv3_mnv2", "deeplabv3plus_r50", "deeplabv3plus_r101",
    "deeplabv3plus_mnv2", "swin_unet_t", "unet_lite0", "unet_lite2", "deeplabv3plus_lite0", "deeplabv3plus_lite2",
    "deeplabv3_mnv3", "lraspp_mnv3", "segformer_b0", "segformer_b1", "segformer_b2", "segformer_b3", "segformer_b4",
    "segformer_b5",
]
# the largest SegFormers take 10-17 s each to build twice or compile on 2 cores: their rebuild and compile checks
# run with -m slow (B0-B2 exercise the same code in the fast suite)
HEAVY = {"segformer_b3", "segformer_b4", "segformer_b5"}
BUILT = [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in CORE_MODELS]


def test_core_models_are_listed():
    assert set(CORE_MODELS) <= set(segzoo.list_models())
    assert [n for n in segzoo.list_models() if segzoo.model_info(n)["source"] == "segzoo"] == sorted(CORE_MODELS)


def test_unet_carvana_matches_milesial_parameter_count():
    # milesial/Pytorch-UNet UNet(n_channels=3, n_classes=2, bilinear=False)
    assert n_params(segzoo.create("unet_carvana")) == 31_037_698


def test_torchvision_parameter_equalities():
    from torchvision.models import segmentation as tvs

    tv = tvs.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)
    assert n_params(segzoo.create("deeplabv3_r50")) == n_params(tv)
    tv = tvs.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=False)
    assert n_params(segzoo.create("fcn_r50")) == n_params(tv)
    tv = tvs.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True)
    assert n_params(segzoo.create("deeplabv3_r50", aux_head=True)) == n_params(tv)


def test_smp_parameter_equalities():
    smp = pytest.importorskip("segmentation_models_pytorch")
    assert n_params(segzoo.create("unet_r34")) == n_params(smp.Unet("resnet34", encoder_weights=None))
    ref = smp.DeepLabV3Plus("resnet50", encoder_weights=None, decoder_atrous_rates=(6, 12, 18), classes=21)
    assert n_params(segzoo.create("deeplabv3plus_r50")) == n_params(ref)


def test_reference_design_configs():
    cfg = segzoo.model_info("deeplabv3plus_r50")["config"]
    assert cfg["encoder"]["output_stride"] == 16
    assert cfg["decoder_params"]["atrous_rates"] == [6, 12, 18]
    assert cfg["decoder_params"]["low_level_channels"] == 48
    for name in ("fcn_r50", "fcn_r101", "deeplabv3_r50", "deeplabv3_r101"):
        model = segzoo.create(name)
        assert max(model.encoder.reductions) == 8, name
    carvana = segzoo.create("unet_carvana")
    assert carvana.encoder.out_channels == (64, 128, 256, 512, 1024)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in carvana.modules()) == 4


@pytest.mark.parametrize("name,encoder,stride,channels", [
    ("unet_lite0", "efficientnet_lite0", 32, (16, 24, 40, 112, 320)),
    ("unet_lite2", "efficientnet_lite2", 32, (16, 24, 48, 120, 352)),
    ("deeplabv3plus_lite0", "efficientnet_lite0", 16, (16, 24, 40, 112, 320)),
    ("deeplabv3plus_lite2", "efficientnet_lite2", 16, (16, 24, 48, 120, 352)),
])
def test_efficientnet_lite_models(name, encoder, stride, channels):
    """PyTorch-padded EfficientNet-Lite (export-friendly), the design stride of each decoder, real reductions."""
    model = segzoo.create(name, num_classes=11).eval()
    assert model.config.encoder.name == encoder
    assert model.config.encoder.output_stride == stride == max(model.encoder.reductions)
    assert model.encoder.out_channels == channels
    with torch.no_grad():
        assert model(torch.randn(1, 3, 70, 90)).shape == (1, 11, 70, 90)


@pytest.mark.parametrize("name", BUILT)
def test_recreated_exactly_from_json_config(name):
    model = segzoo.create(name).eval()
    text = model.config.to_json()
    config = ModelConfig.from_json(json.loads(json.dumps(text)))
    assert config == model.config
    twin = build_model(config).eval()
    twin.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILT)
def test_torch_compile_every_named_model(name):
    model = segzoo.create(name).eval()
    # as segzoo compiles (static shapes), and from a clean state: after another model at another size the
    # default (automatic dynamic shapes) traces Swin-UNet symbolically, which ran for minutes and stalled CI
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=False, dynamic=False)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_channels_last_same_output():
    model = segzoo.create("unet_r18", encoder="test_resnet").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_torch_export_tiny_models():
    for name in ("unet_r18", "deeplabv3plus_r50"):
        model = segzoo.create(name, encoder="test_resnet").eval()
        x = torch.randn(1, 3, 64, 64)
        program = torch.export.export(model, (x,))
        torch.testing.assert_close(program.module()(x), model(x))


def test_overrides():
    model = segzoo.create("deeplabv3plus_r50", num_classes=19, encoder="test_resnet", output_stride=8, in_channels=4)
    assert model.num_classes == 19 and model.in_channels == 4
    assert max(model.encoder.reductions) == 8
    assert model(torch.randn(2, 4, 32, 32)).shape == (2, 19, 32, 32)
    model = segzoo.create("unet_r18", encoder="test_resnet", decoder_channels=(8, 8, 8, 8, 8))
    assert model.decoder.out_channels == 8
    with pytest.raises(TypeError, match="unknown override 'decoder_chanels'"):
        segzoo.create("unet_r18", decoder_chanels=(8,))


def test_aux_and_classification_heads():
    model = segzoo.create("deeplabv3_r50", encoder="test_resnet", aux_head=True, classification_head=5).train()
    x = torch.randn(2, 3, 45, 61)
    out = model.forward_heads(x)
    assert out.logits.shape == out.aux.shape == (2, 21, 45, 61)
    assert out.cls.shape == (2, 5)
    # forward returns the logits alone, whatever heads are configured: one return type
    torch.manual_seed(0)
    model.eval()
    assert torch.equal(model(x), model.forward_heads(x).logits)
    assert model.aux_head[0][0].in_channels == model.encoder.out_channels[-2]
    rebuilt = build_model(ModelConfig.from_json(model.config.to_json()))
    rebuilt.load_state_dict(model.state_dict())


def test_heads_output_old_keys_still_work_with_a_deprecation_warning():
    model = segzoo.create("deeplabv3_r50", encoder="test_resnet", aux_head=True).eval()
    out = model.forward_heads(torch.randn(1, 3, 32, 32))
    with pytest.warns(DeprecationWarning, match=r"output\.aux"):
        assert out["aux"] is out.aux
    with pytest.raises(KeyError):
        out["cls"]  # no classification head


def test_config_records_what_was_built():
    """The resolved config: the stride the encoder was built with, every decoder parameter, the aux width."""
    model = segzoo.create_model("deeplabv3plus", "test_resnet", 3, aux_head=True)
    config = model.config
    assert config.encoder.output_stride == max(model.encoder.reductions) == 16
    assert config.decoder_params["atrous_rates"] == [6, 12, 18] and config.decoder_params["channels"] == 256
    assert config.aux_head.channels == model.encoder.out_channels[-2] // 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_classes = 5
    assert dataclasses.replace(config, num_classes=5).num_classes == 5
    # the resolved config rebuilds the same model, for encoders that cannot dilate too
    for encoder, decoder in (("test_resnet", "deeplabv3plus"), ("plain", "unet"), ("test_vit", "fcn")):
        params = {"encoder_params": {"widths": [8, 16, 32]}, "decoder_channels": [16, 8]} if encoder == "plain" else {}
        model = segzoo.create_model(decoder, encoder, 2, **params)
        rebuilt = build_model(ModelConfig.from_json(model.config.to_json()))
        assert rebuilt.config == model.config
        rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (torch.randn(3, 32, 32), ValueError, r"\(N, 3, H, W\), got \(3, 32, 32\)"),
        (torch.randn(1, 1, 32, 32), ValueError, r"\(N, 3, H, W\), got \(1, 1, 32, 32\)"),
        (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), TypeError, "torch.uint8"),
        ([[1.0]], TypeError, "list"),
    ],
)
def test_bad_input_tensor(bad, error, match):
    model = segzoo.create("unet_r18", encoder="test_resnet")
    with pytest.raises(error, match=match):
        model(bad)


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        segzoo.create("unet_r18", encoder="test_resnet", num_classes=num_classes)


def test_bad_config_values():
    with pytest.raises(ValueError, match="output_stride"):
        segzoo.create("unet_r18", output_stride=12)
    with pytest.raises(ValueError, match="in_channels"):
        segzoo.create("unet_r18", in_channels=0)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\]"):
        ModelConfig.from_dict({**segzoo.model_info("unet_r18")["config"], "colour": "red"})


def test_pretrained_not_yet_published_is_clear():
    with pytest.raises(ValueError, match="no pretrained weights are published for 'unet_r34'"):
        segzoo.create("unet_r34", pretrained=True)
