"""Importers: a peer model with random weights, converted, gives the same outputs (fp32, eval)."""

from __future__ import annotations

import pytest
import torch

from conftest import n_params, randomize_bn
from helpers.classic_unet import MilesialUNet
from segzoo.convert import from_milesial, from_smp, from_torchvision

SIZES = [(64, 64), (96, 128)]


def assert_equivalent(ref, ours, sizes=SIZES):
    for h, w in sizes:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            a, b = ref(x), ours.forward_heads(x)
        a = a if isinstance(a, dict) else {"out": a}  # torchvision returns {"out": ..., "aux": ...}
        pairs = [(a["out"], b.logits)] + ([(a["aux"], b.aux)] if "aux" in a else [])
        assert ("aux" in a) == (b.aux is not None)
        for p, q in pairs:
            assert p.shape == q.shape
            assert (p - q).abs().max().item() <= 1e-4, (h, w)


@pytest.mark.parametrize("name,aux", [("fcn_resnet50", False), ("fcn_resnet50", True), ("deeplabv3_resnet50", False),
                                      ("deeplabv3_resnet50", True)])
def test_torchvision(name, aux):
    from torchvision.models import segmentation as tvs

    ref = randomize_bn(getattr(tvs, name)(weights=None, weights_backbone=None, aux_loss=aux, num_classes=5))
    ours = from_torchvision(ref)
    assert (ours.aux_head is not None) == aux and ours.num_classes == 5
    assert n_params(ours) == n_params(ref)
    assert_equivalent(ref, ours)


@pytest.mark.parametrize("name,aux", [("lraspp_mobilenet_v3_large", False),
                                      ("deeplabv3_mobilenet_v3_large", False),
                                      ("deeplabv3_mobilenet_v3_large", True)])
def test_torchvision_mobilenet_v3(name, aux, tmp_path):
    """torchvision's MobileNetV3 models, inferred from a checkpoint file: LR-ASPP's two classifiers become one
    head (one bias fewer), the aux classifier reads the 40-channel stride-8 tap, as torchvision's does."""
    from torchvision.models import segmentation as tvs

    kwargs = {"aux_loss": aux} if name.startswith("deeplabv3") else {}
    ref = randomize_bn(getattr(tvs, name)(weights=None, weights_backbone=None, num_classes=5, **kwargs))
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    ours = from_torchvision(tmp_path / "tv.pth")
    assert ours.config.encoder.name == "tv_mobilenet_v3_large" and (ours.aux_head is not None) == aux
    assert n_params(ours) == n_params(ref) - (5 if name.startswith("lraspp") else 0)
    assert_equivalent(ref, ours, sizes=[(64, 64), (96, 128), (97, 131)])


def test_torchvision_101_from_checkpoint_file_infers_arch(tmp_path):
    from torchvision.models import segmentation as tvs

    ref = randomize_bn(tvs.deeplabv3_resnet101(weights=None, weights_backbone=None, aux_loss=False, num_classes=3))
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    ours = from_torchvision(tmp_path / "tv.pth")
    assert ours.config.encoder.name == "resnet101" and ours.config.decoder == "deeplabv3"
    assert_equivalent(ref, ours, sizes=[(64, 64)])


SMP_CASES = [
    ("Unet", "resnet34", {}),
    ("Unet", "tu-resnet18", {"decoder_channels": (64, 32, 16, 16, 8)}),
    ("Unet", "resnet18", {"aux_params": {"classes": 4}}),
    ("DeepLabV3", "resnet18", {}),
    ("DeepLabV3Plus", "resnet18", {}),
    ("DeepLabV3Plus", "tu-resnet18", {"decoder_atrous_rates": (6, 12, 18)}),
    ("DeepLabV3Plus", "tu-convnext_atto", {}),
]


@pytest.mark.parametrize("arch,encoder,kw", SMP_CASES)
def test_smp(arch, encoder, kw):
    smp = pytest.importorskip("segmentation_models_pytorch")
    ref = randomize_bn(getattr(smp, arch)(encoder, encoder_weights=None, classes=3, **kw))
    ours = from_smp(ref)
    assert n_params(ours) == n_params(ref)
    if "aux_params" in kw:
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            (mask, labels), out = ref(x), ours.forward_heads(x)
        assert (mask - out.logits).abs().max() <= 1e-4 and (labels - out.cls).abs().max() <= 1e-4
    else:
        assert_equivalent(ref, ours)


def test_smp_state_dict_needs_arch(tmp_path):
    smp = pytest.importorskip("segmentation_models_pytorch")
    ref = randomize_bn(smp.Unet("resnet18", encoder_weights=None, classes=2))
    torch.save(ref.state_dict(), tmp_path / "smp.pth")
    with pytest.raises(ValueError, match="arch="):
        from_smp(tmp_path / "smp.pth")
    ours = from_smp(tmp_path / "smp.pth", arch={"arch": "Unet", "encoder_name": "resnet18", "classes": 2})
    assert_equivalent(ref, ours, sizes=[(64, 64)])
    with pytest.raises(ValueError, match="Linknet"):
        from_smp(ref.state_dict(), arch={"arch": "Linknet", "encoder_name": "resnet18"})


def test_milesial_checkpoint_with_mask_values(tmp_path):
    ref = randomize_bn(MilesialUNet(3, 2))
    checkpoint = dict(ref.state_dict())
    checkpoint["mask_values"] = [0, 1]  # what their train.py stores beside the weights
    torch.save(checkpoint, tmp_path / "checkpoint.pth")
    ours = from_milesial(tmp_path / "checkpoint.pth")
    assert n_params(ours) == n_params(ref) == 31_037_698
    assert ours.meta.class_names == ["mask value 0", "mask value 1"]
    assert_equivalent(ref, ours, sizes=[(64, 64), (48, 80)])  # sizes divisible by 16: no padding on either side
    ours_model = from_milesial(ref)  # the model object works too
    assert_equivalent(ref, ours_model, sizes=[(32, 32)])


def test_refuses_pickled_code(tmp_path):
    import argparse

    torch.save({"outc.conv.weight": torch.zeros(1), "x": argparse.Namespace()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only"):
        from_milesial(tmp_path / "evil.pth")


def test_wrong_checkpoint_kinds(tmp_path):
    with pytest.raises(ValueError, match="outc.conv.weight"):
        from_milesial({"conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"neither a ResNet-50/101 nor MobileNetV3-Large.*lraspp_mobilenet_v3_large"):
        from_torchvision({"backbone.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="classifier.4.weight"):
        from_torchvision({"backbone.conv1.weight": torch.zeros(1)}, arch="fcn_resnet50")
    with pytest.raises(ValueError, match="unknown torchvision architecture 'lraspp_mobilenet_v3_small'"):
        from_torchvision({}, arch="lraspp_mobilenet_v3_small")


def test_cli_convert(tmp_path, capsys):
    import segzoo
    from segzoo.cli import main

    ref = randomize_bn(MilesialUNet(3, 2))
    torch.save(ref.state_dict(), tmp_path / "m.pth")
    assert main(["convert", str(tmp_path / "m.pth"), str(tmp_path / "out"), "--from", "milesial"]) == 0
    loaded = segzoo.from_pretrained(tmp_path / "out")
    assert_equivalent(ref, loaded, sizes=[(32, 48)])
    assert main(["convert", str(tmp_path / "nope.pth"), str(tmp_path / "o2"), "--from", "milesial"]) == 2
    assert "nope.pth" in capsys.readouterr().err
