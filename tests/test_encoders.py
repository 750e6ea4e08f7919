"""The encoder contract: timm backbones, the plain U-Net encoder, offline weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from conftest import shared_weights_dir
from segzoo import EncoderConfig
from segzoo.encoders import build_encoder

TINY_SWIN = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "window_size": 4}


def _shapes(encoder, size=(64, 96), in_channels=3):
    feats = encoder(torch.randn(2, in_channels, *size))
    return [tuple(f.shape) for f in feats]


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_convnext", "test_vit"])
def test_contract_matches_features(name):
    enc = build_encoder(EncoderConfig(name)).eval()
    shapes = _shapes(enc)
    assert len(shapes) == len(enc.out_channels) == len(enc.reductions)
    for (n, c, h, w), ch, r in zip(shapes, enc.out_channels, enc.reductions):
        assert (n, c, h, w) == (2, ch, 64 // r, 96 // r)


def test_channels_last_family_returns_nchw():
    enc = build_encoder(EncoderConfig("swin_tiny_patch4_window7_224", params=TINY_SWIN)).eval()
    assert enc.reductions == (4, 8, 16, 32)
    shapes = _shapes(enc, (64, 96))
    assert [s[1] for s in shapes] == list(enc.out_channels) == [16, 32, 64, 128]
    assert [s[2:] for s in shapes] == [(16, 24), (8, 12), (4, 6), (2, 3)]


@pytest.mark.parametrize("in_channels", [1, 4])
def test_in_channels(in_channels):
    enc = build_encoder(EncoderConfig("test_resnet", in_channels=in_channels)).eval()
    assert len(_shapes(enc, in_channels=in_channels)) == 5


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "test_convnext"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_is_real(name, output_stride):
    enc = build_encoder(EncoderConfig(name, output_stride=output_stride)).eval()
    assert max(enc.reductions) == output_stride
    shapes = _shapes(enc, (64, 64))
    assert min(s[2] for s in shapes) == 64 // output_stride  # the built model really dilates


def test_output_stride_unsupported_family_raises():
    with pytest.raises(ValueError, match="output_stride"):
        build_encoder(EncoderConfig("swin_tiny_patch4_window7_224", output_stride=16, params=TINY_SWIN))
    with pytest.raises(ValueError, match="output_stride"):
        build_encoder(EncoderConfig("test_vit", output_stride=8))


def test_depth_keeps_first_stages():
    enc = build_encoder(EncoderConfig("test_resnet", depth=3))
    assert enc.reductions == (2, 4, 8)
    with pytest.raises(ValueError, match="test_resnet"):
        build_encoder(EncoderConfig("test_resnet", depth=9))


def test_plain_encoder_is_classic_unet_path():
    enc = build_encoder(EncoderConfig("plain", params={"widths": (8, 16, 32)})).eval()
    assert enc.reductions == (1, 2, 4) and enc.out_channels == (8, 16, 32)
    assert _shapes(enc, (16, 24)) == [(2, 8, 16, 24), (2, 16, 8, 12), (2, 32, 4, 6)]
    with pytest.raises(ValueError, match="output_stride"):
        build_encoder(EncoderConfig("plain", output_stride=8))
    with pytest.raises(ValueError, match="widths"):
        build_encoder(EncoderConfig("plain", params={"width": (8,)}))


def test_local_weights_match_timm(mobilenetv2_weights):
    """The reference check of the issue: segzoo's encoder == timm features_only loaded with the same file."""
    import timm
    from safetensors.torch import load_file

    with pytest.warns(UserWarning, match="classifier"):
        enc = build_encoder(EncoderConfig("mobilenetv2_100", weights=str(mobilenetv2_weights))).eval()
    ref = timm.create_model("mobilenetv2_100", features_only=True).eval()
    state = load_file(str(mobilenetv2_weights))
    result = ref.load_state_dict(state, strict=False)
    assert not result.missing_keys
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ours, theirs = enc(x), ref(x)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and the weights were not random: a fresh encoder differs
    fresh = build_encoder(EncoderConfig("mobilenetv2_100")).eval()
    assert not torch.allclose(fresh(x)[-1], ours[-1])


def test_local_weights_pth_and_errors(tmp_path):
    src = build_encoder(EncoderConfig("test_resnet"))
    state = {k: v.clone() for k, v in src.model.state_dict().items()}
    pth = tmp_path / "enc.pth"
    torch.save(state, pth)
    enc = build_encoder(EncoderConfig("test_resnet", weights=str(pth)))
    for k, v in enc.model.state_dict().items():
        assert torch.equal(v, state[k])

    # another architecture's weights: names the offending keys
    other = tmp_path / "other.safetensors"
    other_state = build_encoder(EncoderConfig("test_efficientnet")).model.state_dict()
    save_file({k: v.contiguous() for k, v in other_state.items()}, str(other))
    with pytest.raises(ValueError, match="missing key"):
        build_encoder(EncoderConfig("test_resnet", weights=str(other)))
    # shape mismatch: names key and both shapes
    bad = dict(state)
    key = next(k for k in bad if k.endswith("conv1.weight"))
    bad[key] = torch.zeros(1, 1, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="shape mismatch"):
        build_encoder(EncoderConfig("test_resnet", weights=str(tmp_path / "bad.pth")))
    # missing, truncated and non-state-dict files
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        build_encoder(EncoderConfig("test_resnet", weights=str(tmp_path / "nope.safetensors")))
    (tmp_path / "trunc.safetensors").write_bytes(b"\x10\x00\x00")
    with pytest.raises(ValueError, match="trunc.safetensors"):
        build_encoder(EncoderConfig("test_resnet", weights=str(tmp_path / "trunc.safetensors")))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="state dict"):
        build_encoder(EncoderConfig("test_resnet", weights=str(tmp_path / "list.pth")))


def test_pickled_code_is_refused(tmp_path):
    import argparse  # any class outside torch's weights_only allow-list stands for arbitrary code

    torch.save({"w": torch.zeros(1), "obj": argparse.Namespace(a=1)}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only"):
        build_encoder(EncoderConfig("test_resnet", weights=str(tmp_path / "evil.pth")))


def test_encoder_weights_from_a_segzoo_file(tmp_path):
    """A trained segzoo model's file seeds the encoder of another model; decoder and head are reported."""
    import segzoo
    from segzoo.storage.format import write_weights

    trained = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3)
    path = write_weights(trained, tmp_path / "trained.safetensors")
    with pytest.warns(UserWarning, match=r"ignored 62 tensor\(s\).*decoder\.blocks"):
        other = segzoo.create("deeplabv3plus_r50", encoder="test_resnet", output_stride=32,
                              encoder_weights=str(path), num_classes=7)
    for key, value in trained.encoder.state_dict().items():
        assert torch.equal(other.encoder.state_dict()[key], value)
    carvana = segzoo.create("unet_carvana", encoder_params={"widths": (8, 16)}, decoder_channels=(8,))
    path = write_weights(carvana, tmp_path / "plain.safetensors")
    with pytest.warns(UserWarning):
        enc = build_encoder(EncoderConfig("plain", params={"widths": (8, 16)}, weights=str(path)))
    assert torch.equal(enc.state_dict()["stages.0.0.0.weight"], carvana.encoder.state_dict()["stages.0.0.0.weight"])


def _timm_style_file(path, metadata):
    """A plain backbone state dict (timm's layout) with a header, as the offline ImageNet files are."""
    state = build_encoder(EncoderConfig("test_efficientnet")).model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def test_preprocessing_comes_with_the_encoder_weights(tmp_path):
    """A model whose encoder is initialised from a file normalises as the file's header says, unless the caller
    gives a meta; fresh weights keep ImageNet's mean / std."""
    import segzoo
    from segzoo.core.config import ModelMeta, Preprocessing

    path = _timm_style_file(tmp_path / "enc.safetensors", {"input_mean": "0.5,0.5,0.5", "input_std": "0.5,0.5,0.5"})
    model = segzoo.create_model("unet", "test_efficientnet", num_classes=2, encoder_weights=str(path))
    assert model.meta.preprocessing.mean == (0.5, 0.5, 0.5) and model.meta.preprocessing.std == (0.5, 0.5, 0.5)
    assert segzoo.create_model("unet", "test_efficientnet", num_classes=2).meta.preprocessing == Preprocessing()
    # an explicit meta wins
    mine = ModelMeta(preprocessing=Preprocessing((0.1, 0.2, 0.3), (1.0, 1.0, 1.0)))
    built = segzoo.SegmentationModel(model.config, mine)
    assert built.meta.preprocessing.mean == (0.1, 0.2, 0.3)
    # a header without normalisation, and a .pth file: ImageNet's
    bare = _timm_style_file(tmp_path / "bare.safetensors", {"source": "somewhere"})
    assert segzoo.create_model("unet", "test_efficientnet", num_classes=2,
                               encoder_weights=str(bare)).meta.preprocessing == Preprocessing()
    # a segzoo weights file used as encoder weights passes its own preprocessing on
    model.meta.preprocessing = Preprocessing((0.25, 0.25, 0.25), (0.5, 0.5, 0.5))
    from segzoo.storage.format import write_weights

    trained = write_weights(model, tmp_path / "trained.safetensors")
    with pytest.warns(UserWarning, match="ignored"):
        child = segzoo.create_model("fcn", "test_efficientnet", num_classes=3, encoder_weights=str(trained))
    assert child.meta.preprocessing.mean == (0.25, 0.25, 0.25)


@pytest.mark.parametrize("metadata,match", [
    ({"input_mean": "0.5,half,0.5", "input_std": "0.5,0.5,0.5"}, "input_mean.*comma-separated numbers"),
    ({"input_mean": "0.5,0.5,0.5"}, "not 'input_std'"),
    ({"input_mean": "0.5,0.5,0.5", "input_std": "0.5,0,0.5"}, "std must be positive"),
])
def test_bad_preprocessing_headers_are_named(tmp_path, metadata, match):
    path = _timm_style_file(tmp_path / "enc.safetensors", metadata)
    with pytest.raises(ValueError, match=match):
        build_encoder(EncoderConfig("test_efficientnet", weights=str(path)))


def test_segzoo_meta_key_is_the_storage_key():
    from segzoo.encoders.weights import SEGZOO_META_KEY
    from segzoo.storage.format import META_KEY

    assert SEGZOO_META_KEY == META_KEY


@pytest.mark.parametrize("name,file", [("unet_lite2", "tf_efficientnet_lite2.in1k"),
                                        ("deeplabv3plus_lite0", "tf_efficientnet_lite0.in1k")])
def test_efficientnet_lite_imagenet_weights_load_with_their_normalisation(name, file):
    """The offline EfficientNet-Lite files load into the PyTorch-padded timm models; mean = std = 0.5 follows."""
    import segzoo

    path = shared_weights_dir() / f"{file}.safetensors"
    if not path.is_file():
        pytest.skip(f"offline ImageNet weights not found at {path} (set SEGZOO_WEIGHTS)")
    with pytest.warns(UserWarning, match="classifier"):
        model = segzoo.create(name, num_classes=3, encoder_weights=file)
    assert model.meta.preprocessing.mean == (0.5, 0.5, 0.5) == model.meta.preprocessing.std
